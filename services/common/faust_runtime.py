"""What every faust stream processor shares: batches that wait out outages, SIGTERM during an
outage, the lag gauge, the /metrics, /health and /ready pages.

The batch agent takes each of the consumer's fetches whole (`install_batch_agent`) and
acknowledges its messages once the batch is processed; so an outage of PostgreSQL or Kafka
is waited out inside the loop, and the partition waits with it. Bad messages never reach this
loop: the service's handler parks them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import faust
import uvloop
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common import kafka, logs
from services.common.faust_tuning import BatchTransport, QuietMonitor, batch_queues, take
from services.common.gc_tuning import tune_gc
from services.common.metrics import StreamMetrics, observe_lag
from services.common.outage import Backoff, is_outage
from services.common.ready import RETRY_AFTER_S, Readiness, assigned_check, connect_check, kafka_check
from services.common.rulesets import publish_ruleset
from services.common.settings import Settings

log = logging.getLogger(__name__)
M = TypeVar("M")
# Exit status of a worker that stopped during an outage with a batch left unacknowledged.
EXIT_REDELIVER = 75
# Events a stream may hold ahead of its agent. At 2,000 faust's flow control paused the
# partitions every few batches and the fetches resumed late: on the national month the
# assessment waited 10.3 s of 20.5 s for events, in 22 stalls of 0.2 to 0.6 s (month end to end
# 20.5 s). At 20,000: 1.8 s in 3 stalls, the month in 12.4 s, the same peak RSS (about 200 MiB).
STREAM_BUFFER = 20_000


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


def install_lag_gauge(app: faust.App, stream: StreamMetrics, interval: float = 5.0) -> None:
    """kalo_<service>_consumer_lag per assigned partition, every `interval` seconds."""

    @app.timer(interval=interval)
    async def lag() -> None:
        await observe_lag(stream, app.consumer)


def install_pages(app: faust.App, service: str, settings: Settings) -> None:
    """/metrics for Prometheus, /health (alive: the worker answers) and /ready (PostgreSQL
    and Kafka answer, partitions of its topic are assigned to this worker)."""
    readiness = Readiness(
        {
            "postgres": connect_check(service, settings),
            "kafka": kafka_check(settings),
            "consumer": assigned_check(lambda: app.consumer),
        }
    )

    @app.page("/metrics")
    async def metrics_page(web, request):  # type: ignore[no-untyped-def]
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web, request):  # type: ignore[no-untyped-def]
        return web.json({"status": "ok", "stopping": bool(app.should_stop)})

    @app.page("/ready")
    async def ready_page(web, request):  # type: ignore[no-untyped-def]
        status, body = await readiness.report()
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status != 200 else None
        return web.json(body, status=status, headers=headers)


def run_worker(app: faust.App, name: str) -> None:
    """Start the faust worker in the foreground (what `kalo run NAME` does)."""
    import sys

    use_uvloop()
    tune_gc()
    s: Settings = app.conf.kalo_settings  # type: ignore[attr-defined]
    config = logs.logging_config(name.removeprefix("kalo-"), s)
    app.conf.logging_config = config  # faust applies it in place of its own handlers
    # JSON logs: no banner on stdout, every line a JSON one.
    quiet = ["--quiet"] if logs.is_json(config) else []
    sys.argv = [name, *quiet, "worker", "--loglevel", s.log_level.lower()]
    app.main()


def use_uvloop() -> None:
    """uvloop (a dependency already, for the gateway): the event loop's own cost per callback,
    task and socket write was a tenth of the assessment's CPU on asyncio's default loop. Set
    before the app is built: faust keeps the loop it first asks for (`app.loop`), and faust's
    `--loop uvloop` option is parsed but not applied."""
    if not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy):
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def stream_app(s: Settings, name: str, *, web_port: int, batch: int) -> faust.App:
    """A stream processor's faust app: raw bytes in and out, Kafka's limits raised as the
    broker's, acks from every replica, its state under the data folder."""
    use_uvloop()
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{s.topic_prefix}kalo-{name}",
        broker=f"kafka://{s.bootstrap}",
        web_host=s.metrics_host,
        web_bind=s.metrics_host,  # faust's default is 0.0.0.0
        web_port=web_port,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.partitions,
        producer_acks=-1,
        producer_max_request_size=s.max_message_bytes,
        consumer_max_fetch_size=s.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=batch,
        broker_session_timeout=s.kafka_session_timeout_s,
        broker_heartbeat_interval=max(1.0, s.kafka_session_timeout_s / 4),
        broker_rebalance_timeout=max(20.0, s.kafka_session_timeout_s * 2),
        stream_buffer_maxsize=max(STREAM_BUFFER, batch * 2),
        topic_allow_declare=False,
        datadir=f"{s.data_dir}/{s.topic_prefix}{name}",
        Monitor=QuietMonitor,
    )
    # Each fetch delivered under one wait, not four tasks per record (faust_tuning).
    app.transport = BatchTransport(app.conf.broker_consumer, app)
    return app


def install_batch_agent(
    app: faust.App,
    source: str,
    *,
    batch: int,
    consumed: Callable[[Any], M],
    process: Callable[[list[M]], Awaitable[None]],
) -> None:
    """The entry point of a stream processor: batches of `source` decoded to messages, each
    batch processed until done (outages waited out)."""

    # The agent takes the consumer's fetches whole (up to `batch` records each), as aiokafka
    # returned them: faust's path event by event (an Event, a queue put and get, a stream
    # step per record) cost 1.54-2.04 CPU-seconds of the national month's 57,750
    # declarations with a handler that did nothing; the fetches from this queue, 0.52-0.57 s.
    # (Registered before the consumer starts: no fetch of `source` takes faust's path.)
    queue = app.FlowControlQueue(maxsize=max(2, STREAM_BUFFER // batch), clear_on_resume=True)
    batch_queues(app)[source] = queue

    async def agent(stream: faust.StreamT) -> None:
        consumer = app.consumer
        while True:
            fetched = take(app, await queue.get())
            if not fetched:
                continue
            messages = [consumed(message) for message in fetched]
            await until_done(app, partial(process, messages), size=len(messages))
            for message in fetched:  # acknowledged once processed: their offsets may be committed
                consumer.ack(message)

    app.agent(app.topic(source, internal=False), name=source)(agent)


class Outputs:
    """A stream processor's own producer (record batches built by the service), opened on the
    first batch, after the ruleset it runs is stored under its id (the auditors' replay)."""

    def __init__(self, settings: Settings, service: str, ruleset_id: str, files: Mapping[str, bytes]) -> None:
        self.settings = settings
        self.service = service
        self.ruleset_id = ruleset_id
        self.files = files
        self._producer: AIOKafkaProducer | None = None

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = kafka.producer(self.settings, max_batch_size=1_048_576)
            await producer.start()
            await publish_ruleset(producer, self.settings, self.ruleset_id, self.files, self.service)
            self._producer = producer
        return self._producer
