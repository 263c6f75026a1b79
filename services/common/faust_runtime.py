"""What every faust stream processor shares: batches that wait out outages, SIGTERM during an
outage, the lag gauge, the /metrics and /health pages.

A faust batch (`take_events`) is acknowledged when the agent's loop body ends, even on an
error; so an outage of PostgreSQL or Kafka is waited out inside the body, and the partition
waits with it. Bad messages never reach this loop: the service's handler parks them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common import metrics
from services.common.outage import Backoff, is_outage

log = logging.getLogger(__name__)
# Exit status of a worker that stopped during an outage with a batch left unacknowledged.
EXIT_REDELIVER = 75


async def until_done(app: faust.App, work: Callable[[], Awaitable[None]], *, size: int) -> None:
    """Run `work` (one batch) until it succeeds, backing off while PostgreSQL or Kafka is away."""
    backoff = Backoff(base=0.5, cap=5.0)
    while True:
        try:
            await work()
            return
        except Exception as exc:
            if is_outage(exc):
                log.warning("PostgreSQL or Kafka unavailable (%r); retrying the batch", exc)
            else:  # the handler parks bad messages; this is the batch code itself
                log.exception("batch failed; retrying")
        deadline = time.monotonic() + backoff.next_delay()
        while time.monotonic() < deadline:
            if app.should_stop:
                # Stopping in an outage: ending the loop body would acknowledge a batch that was
                # not processed. Leave without committing; Kafka redelivers it to the next
                # worker, whose outputs carry the same ids (sinks drop the duplicates).
                log.error("stopping during an outage: %d messages left for redelivery", size)
                logging.shutdown()
                os._exit(EXIT_REDELIVER)
            await asyncio.sleep(0.25)


def install_lag_gauge(app: faust.App, service: str, interval: float = 5.0) -> None:
    """kalo_consumer_lag per assigned partition, every `interval` seconds."""

    @app.timer(interval=interval)
    async def observe_lag() -> None:
        await metrics.observe_lag(service, app.consumer)


def install_pages(app: faust.App) -> None:
    """/metrics for Prometheus and /health (alive: the worker answers)."""

    @app.page("/metrics")
    async def metrics_page(web, request):  # type: ignore[no-untyped-def]
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web, request):  # type: ignore[no-untyped-def]
        return web.json({"status": "ok", "stopping": bool(app.should_stop)})


def run_worker(app: faust.App, name: str) -> None:
    """Start the faust worker in the foreground (what `kalo run NAME` does)."""
    import sys

    sys.argv = [name, "worker", "--loglevel", "info"]
    app.main()
