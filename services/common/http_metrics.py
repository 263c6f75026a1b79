"""HTTP request metrics of a service's HTTP API, per service:

- kalo_<service>_http_requests_total{method,handler,status}
- kalo_<service>_http_request_duration_seconds{method,handler} (histogram)

`handler` is the route's template (`/v1/declarations/{declaration_id}`), "unmatched" for a
path no route knows, so that the series stay bounded whatever clients send; `status` the
3-digit code answered (500 for an error that escaped every handler).

A small ASGI middleware rather than prometheus-fastapi-instrumentator: the instrumentator
would be a new dependency for ~50 lines, and its defaults add families (sizes, a second
latency histogram) and a label spelling ("2xx", "none") that the alerts do not use.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    duration: Histogram


_MADE: dict[str, HttpMetrics] = {}


def http_metrics(service: str) -> HttpMetrics:
    """The HTTP families of `service` (made once per process)."""
    made = _MADE.get(service)
    if made is None:
        made = HttpMetrics(
            requests=Counter(
                f"kalo_{service}_http_requests_total",
                f"{service}: HTTP requests answered, by method, route and status",
                ["method", "handler", "status"],
            ),
            duration=Histogram(
                f"kalo_{service}_http_request_duration_seconds",
                f"{service}: time to answer an HTTP request, by method and route",
                ["method", "handler"],
                buckets=BUCKETS,
            ),
        )
        _MADE[service] = made
    return made


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves `scope` (also for a wrong method: 405). The
    router leaves the route it chose in the scope; a request answered before routing (413,
    415 by a middleware) is matched here against the routes, included routers' too."""
    chosen = scope.get("route")
    if chosen is not None and getattr(chosen, "path", None):
        return str(chosen.path)
    partial = None
    for route in _flat(routes):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
        if match == Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", UNMATCHED))
    return partial or UNMATCHED


def _flat(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        # FastAPI keeps an included router whole (`original_router`): its routes, one by one.
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _flat(inner)
        else:
            yield route


class HttpMetricsMiddleware:
    """Counts and times every HTTP request; outermost, so that the answers of the other
    middlewares (413, 415, 429) count too. `routes`: the app's route list (read per request:
    routes added after the middleware count)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            handler = route_template(self.routes, scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, handler, str(status)).inc()
            self.metrics.duration.labels(method, handler).observe(time.perf_counter() - started)
