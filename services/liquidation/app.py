"""The liquidation, built from its settings when it starts: the faust app, its agent, the
careers' pool, the outputs' producer, the ruleset. Nothing is built at import."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from services.common import kafka, metrics
from services.common.db import connect_pool
from services.common.faust_runtime import install_lag_gauge, install_pages, run_worker, until_done
from services.common.kafka import topic
from services.common.settings import Settings, get_settings
from services.liquidation import handlers
from services.liquidation.adapters import SERVICE, KafkaDeadLetters, KafkaSender, PgCareers
from services.rules import Ruleset, load_ruleset

log = logging.getLogger(__name__)


class Resources:
    """The careers' pool and the outputs' producer, opened on the first batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._careers: PgCareers | None = None
        self._producer: AIOKafkaProducer | None = None

    async def careers(self) -> PgCareers:
        if self._careers is None:
            pool = await connect_pool(service="liquidation", settings=self.settings, min_size=1, max_size=2)
            self._careers = PgCareers(pool, self.settings)
        return self._careers

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = kafka.producer(self.settings, max_batch_size=1_048_576)
            await producer.start()
            self._producer = producer
        return self._producer


def create_app(settings: Settings | None = None, ruleset: Ruleset | None = None) -> faust.App:
    s = settings or get_settings()
    rules = ruleset or load_ruleset()
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{s.topic_prefix}kalo-liquidation",
        broker=f"kafka://{s.bootstrap}",
        web_host=s.metrics_host,
        web_port=s.liquidation_web_port,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.partitions,
        producer_acks=-1,
        producer_max_request_size=s.max_message_bytes,
        consumer_max_fetch_size=s.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=s.liquidation_batch,
        broker_session_timeout=s.kafka_session_timeout_s,
        broker_heartbeat_interval=max(1.0, s.kafka_session_timeout_s / 4),
        broker_rebalance_timeout=max(20.0, s.kafka_session_timeout_s * 2),
        stream_buffer_maxsize=max(2000, s.liquidation_batch * 2),
        topic_allow_declare=False,
        datadir=f"{s.data_dir}/{s.topic_prefix}liquidation",
    )
    resources = Resources(s)
    claims = app.topic(topic("kalo.pensions.claims", s), internal=False)
    max_output_bytes = s.max_message_bytes - 65_536  # room for the record's key and headers

    async def process(messages: list[handlers.Message]) -> None:
        started = time.perf_counter()
        sender = KafkaSender(await resources.producer(), s)
        outcomes = await handlers.liquidate_batch(
            messages,
            rules,
            careers=await resources.careers(),
            sender=sender,
            dead_letters=KafkaDeadLetters(sender),
            max_output_bytes=max_output_bytes,
        )
        observe(outcomes)
        took = time.perf_counter() - started
        metrics.PROCESSING.labels(SERVICE).observe(took)
        log.info("%d claims liquidated in %.3f s", len(messages), took)

    @app.agent(claims)
    async def liquidate(stream: faust.StreamT) -> None:
        async for events in stream.take_events(s.liquidation_batch, within=0.2):
            messages = [_message(event.message) for event in events]
            await until_done(app, partial(process, messages), size=len(messages))

    install_lag_gauge(app, SERVICE)
    install_pages(app)
    app.conf.kalo_settings = s  # type: ignore[attr-defined]
    return app


def _message(record: Any) -> handlers.Message:
    return handlers.Message(record.topic, record.partition, record.offset, record.key, record.value or b"")


def observe(outcomes: list[handlers.Outcome]) -> None:
    """Metrics of a batch, added once per label."""
    decisions: Counter[tuple[str, str]] = Counter()
    now = datetime.now(UTC)
    for outcome in outcomes:
        decisions[(outcome.regime, outcome.decision)] += 1
        if outcome.filed_at is not None:
            metrics.END_TO_END.labels("liquidated").observe(
                max((now - outcome.filed_at).total_seconds(), 0.0)
            )
    for (regime, decision), n in decisions.items():
        metrics.LIQUIDATIONS.labels(regime, decision).inc(n)


def run(settings: Settings | None = None) -> None:
    run_worker(create_app(settings), "kalo-liquidation")
