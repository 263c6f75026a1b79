"""The operations port of a service without an HTTP API of its own (the ledger, the audit store,
the control's metrics port): /metrics, /health and /ready, 404 on any other path.

aiohttp (already there with faust) in the service's own event loop, so that /ready sees the
service's pool and consumer; prometheus_client's start_http_server answered metrics on every
path, so a /health there proved nothing.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.ready import RETRY_AFTER_S, Readiness

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.split(";")[0]


def ops_app(readiness: Readiness) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type=METRICS_CONTENT_TYPE)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_request: web.Request) -> web.Response:
        status, body = await readiness.report()
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status != 200 else None
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    return app


async def start_ops_server(host: str, port: int, readiness: Readiness) -> web.AppRunner:
    """Serve the operations port until the runner is cleaned up (`await runner.cleanup()`)."""
    runner = web.AppRunner(ops_app(readiness), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
