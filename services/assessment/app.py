"""The assessment, built from its settings when it starts: the faust app, its agent, its
registry, its producer. Nothing is built at import."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from contracts.declarations import ITEM_COLUMNS
from services.assessment import handlers
from services.assessment.adapters import SERVICE, KafkaDeadLetters, KafkaSender, PgRegistry
from services.common import kafka, metrics
from services.common.db import connect_pool
from services.common.faust_runtime import install_lag_gauge, install_pages, run_worker, until_done
from services.common.kafka import topic
from services.common.rulesets import publish_ruleset
from services.common.settings import Settings, get_settings
from services.rules import Ruleset, load_ruleset

FUND_OF_BRANCH = {c.split(":")[0]: c.split(":")[1] for c in ITEM_COLUMNS}


class Resources:
    """The registry's pool and the outputs' producer, opened on the first batch."""

    def __init__(self, settings: Settings, ruleset: Ruleset) -> None:
        self.settings = settings
        self.ruleset = ruleset
        self._registry: PgRegistry | None = None
        self._producer: AIOKafkaProducer | None = None

    async def registry(self) -> PgRegistry:
        if self._registry is None:
            pool = await connect_pool(service="assessment", settings=self.settings, min_size=1, max_size=2)
            self._registry = PgRegistry(pool)
        return self._registry

    async def producer(self) -> AIOKafkaProducer:
        # The outputs' own producer: record batches built here, not one `send` per message.
        if self._producer is None:
            producer = kafka.producer(self.settings, max_batch_size=1_048_576)
            await producer.start()
            # The ruleset is stored under its id before anything is assessed with it.
            await publish_ruleset(producer, self.settings, self.ruleset.id, self.ruleset.files, SERVICE)
            self._producer = producer
        return self._producer


def create_app(settings: Settings | None = None, ruleset: Ruleset | None = None) -> faust.App:
    s = settings or get_settings()
    rules = ruleset or load_ruleset(Path(s.rules_dir) if s.rules_dir else None)
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{s.topic_prefix}kalo-assessment",
        broker=f"kafka://{s.bootstrap}",
        web_host=s.metrics_host,
        web_port=s.assessment_web_port,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.partitions,
        producer_acks=-1,
        producer_max_request_size=s.max_message_bytes,
        consumer_max_fetch_size=s.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=500,
        broker_session_timeout=s.kafka_session_timeout_s,
        broker_heartbeat_interval=max(1.0, s.kafka_session_timeout_s / 4),
        broker_rebalance_timeout=max(20.0, s.kafka_session_timeout_s * 2),
        stream_buffer_maxsize=2000,
        topic_allow_declare=False,
        datadir=f"{s.data_dir}/{s.topic_prefix}assessment",
    )
    resources = Resources(s, rules)
    submitted = app.topic(topic("kalo.declarations.submitted", s), internal=False)
    max_output_bytes = s.max_message_bytes - 65_536  # room for the record's key and headers

    async def process(messages: list[handlers.Message]) -> None:
        started = time.perf_counter()
        sender = KafkaSender(await resources.producer(), s)
        outcomes = await handlers.assess_batch(
            messages,
            rules,
            registry=await resources.registry(),
            sender=sender,
            dead_letters=KafkaDeadLetters(sender),
            max_output_bytes=max_output_bytes,
        )
        observe(outcomes)
        metrics.PROCESSING.labels(SERVICE).observe(time.perf_counter() - started)

    @app.agent(submitted)
    async def assess(stream: faust.StreamT) -> None:
        async for events in stream.take_events(s.assessment_batch, within=0.2):
            messages = [_message(event.message) for event in events]
            await until_done(app, partial(process, messages), size=len(messages))

    install_lag_gauge(app, SERVICE)
    install_pages(app)
    app.conf.kalo_settings = s  # type: ignore[attr-defined]
    return app


def _message(record: Any) -> handlers.Message:
    return handlers.Message(record.topic, record.partition, record.offset, record.key, record.value or b"")


def observe(outcomes: list[handlers.Outcome]) -> None:
    """Metrics of a batch, added once per label (a label lookup costs as much as a small line)."""
    declarations: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    francs: Counter[str] = Counter()
    now = datetime.now(UTC)
    for outcome in outcomes:
        declarations[outcome.status] += 1
        lines[outcome.status] += outcome.lines
        errors.update(err["code"] for err in outcome.errors)
        francs.update(outcome.by_branch)
        latency = (now - outcome.submitted_at).total_seconds()
        metrics.END_TO_END.labels("assessed").observe(max(latency, 0.0))
    for status, n in declarations.items():
        metrics.DECLARATIONS.labels(status).inc(n)
    for status, n in lines.items():
        metrics.LINES.labels(status).inc(n)
    for code, n in errors.items():
        metrics.REJECTIONS.labels(code).inc(n)
    for branch, amount in francs.items():
        metrics.CONTRIBUTIONS.labels(branch, FUND_OF_BRANCH.get(branch, "?")).inc(amount)


def run(settings: Settings | None = None) -> None:
    run_worker(create_app(settings), "kalo-assessment")
