"""The assessment agent: decode → look up the registries → assess → send, a batch at a time."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from contracts.declarations import ITEM_COLUMNS
from services.assessment import handlers
from services.assessment.app import create_app, submitted_topic
from services.assessment.registry import Registry
from services.common import kafka, metrics
from services.common.db import connect_pool
from services.common.dlq import dead_letter
from services.common.kafka import BatchSender, topic
from services.common.outage import Backoff, is_outage
from services.common.settings import get_settings
from services.rules import load_ruleset

log = logging.getLogger(__name__)
settings = get_settings()
app = create_app(settings)
ruleset = load_ruleset()
SERVICE = "assessment"
FUND_OF_BRANCH = {c.split(":")[0]: c.split(":")[1] for c in ITEM_COLUMNS}


def _observe(outcomes: list[handlers.Outcome]) -> None:
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


class Sender:
    """The batch's outputs, by registry topic name; `flush` returns once all are acknowledged."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.batch = BatchSender(producer)

    async def send(self, registry_name: str, key: str, value: bytes) -> None:
        await self.batch.send(topic(registry_name, settings), key.encode(), value)

    async def flush(self) -> None:
        # Outputs must be acknowledged before the batch's offsets are committed.
        await self.batch.flush()


async def _dead_letter(sender: Sender, msg: Any, exc: BaseException) -> None:
    log.warning("%s/%s/%s to DLQ: %s", msg.topic, msg.partition, msg.offset, exc)
    key, value = dead_letter(
        service=SERVICE,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value or b"",
        error=exc,
    )
    await sender.send("kalo.dlq", key, value)
    metrics.DLQ.labels(SERVICE, msg.topic).inc()


_registry: Registry | None = None
_producer: AIOKafkaProducer | None = None


async def producer() -> AIOKafkaProducer:
    """The outputs' own producer: record batches built here, not one `send` per message."""
    global _producer
    if _producer is None:
        _producer = kafka.producer(settings, max_batch_size=1_048_576)
        await _producer.start()
    return _producer


async def registry() -> Registry:
    global _registry
    if _registry is None:
        _registry = Registry(await connect_pool(settings.dsn, min_size=1, max_size=2))
    return _registry


class OutputTooLarge(ValueError):
    """An output that Kafka would refuse: the declaration is parked, the partition flows."""


async def process(events: list[Any]) -> None:
    """Assess a batch. A message that fails on its own (undecodable, refused by PostgreSQL,
    an output too large, a bug) goes to the DLQ and the others are assessed; only an outage
    of PostgreSQL or Kafka is raised, for the whole batch to be retried."""
    started = time.perf_counter()
    sender = Sender(await producer())
    decoded = []
    for event in events:
        try:
            decoded.append((event.message, handlers.decode_submitted(event.message.value)))
        except Exception as exc:  # undecodable: park it, keep the partition flowing
            await _dead_letter(sender, event.message, exc)
    try:
        outcomes = await _assess(sender, decoded)
    except Exception as exc:
        if is_outage(exc):
            raise
        # Something in the batch breaks the batch (say a text PostgreSQL refuses in a registry
        # lookup): assess one declaration at a time, so only the culprit is parked. Outputs
        # already sent are sent again with the same ids; every sink drops the duplicates.
        log.warning("batch failed (%r); assessing its %d declarations one by one", exc, len(decoded))
        sender, outcomes = Sender(await producer()), []
        for one in decoded:
            try:
                outcomes += await _assess(sender, [one])
            except Exception as single:
                if is_outage(single):
                    raise
                await _dead_letter(sender, one[0], single)
    await sender.flush()
    _observe(outcomes)
    metrics.PROCESSING.labels(SERVICE).observe(time.perf_counter() - started)


async def _assess(sender: Sender, decoded: list[tuple[Any, Any]]) -> list[handlers.Outcome]:
    reg = await registry()
    employers = await reg.employers(env.data.employer.id for _, env in decoded)
    known = await reg.known_workers(sorted({line[0] for _, env in decoded for line in env.data.lines}))
    outcomes = []
    limit = settings.max_message_bytes - 65_536  # room for the record's key and headers
    for msg, env in decoded:
        try:
            outcome = handlers.assess_submitted(
                env,
                msg.value,
                ruleset,
                employer=employers.get(env.data.employer.id),
                known_workers=known,
            )
            for out in outcome.messages:
                if len(out.value) > limit:
                    raise OutputTooLarge(f"{out.topic} message of {len(out.value):,} bytes exceeds {limit:,}")
        except Exception as exc:  # a bug or bad data the contracts let through
            log.exception("assessment failed")
            await _dead_letter(sender, msg, exc)
            continue
        for out in outcome.messages:
            await sender.send(out.topic, out.key, out.value)
        outcomes.append(outcome)
    await sender.flush()
    return outcomes


@app.agent(submitted_topic(app, settings))
async def assess(stream: faust.StreamT) -> None:
    async for events in stream.take_events(settings.assessment_batch, within=0.2):
        await _until_done(list(events))


async def _until_done(events: list[Any]) -> None:
    """take_events acks the batch when the loop body ends, even on error: so an outage of
    PostgreSQL or Kafka is waited out here, and the partition waits with it."""
    backoff = Backoff(base=0.5, cap=5.0)
    while True:
        try:
            await process(events)
            return
        except Exception as exc:
            if not is_outage(exc):  # process() parks bad messages; this is the batch code itself
                log.exception("batch failed; retrying")
            else:
                log.warning("PostgreSQL or Kafka unavailable (%r); retrying the batch", exc)
        deadline = time.monotonic() + backoff.next_delay()
        while time.monotonic() < deadline:
            if app.should_stop:
                # Stopping in an outage: ending the loop body would acknowledge a batch that was
                # not assessed. Leave without committing; Kafka redelivers it to the next worker,
                # whose outputs carry the same ids.
                log.error("stopping during an outage: %d declarations left for redelivery", len(events))
                logging.shutdown()
                os._exit(75)
            await asyncio.sleep(0.25)


@app.timer(interval=5.0)
async def observe_lag() -> None:
    consumer = app.consumer
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        position = await consumer.position(tp)
        if highwater is not None and position is not None:
            metrics.LAG.labels(SERVICE, tp.topic, str(tp.partition)).set(max(highwater - position, 0))
