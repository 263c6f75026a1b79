"""The assessment agent: decode → assess → send, a batch of declarations at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import faust

from services.assessment import handlers
from services.assessment.app import create_app, submitted_topic
from services.common import metrics
from services.common.dlq import dead_letter
from services.common.kafka import topic
from services.common.settings import get_settings
from services.rules import load_ruleset

log = logging.getLogger(__name__)
settings = get_settings()
app = create_app(settings)
ruleset = load_ruleset()
SERVICE = "assessment"


def _observe(outcome: handlers.Outcome) -> None:
    metrics.DECLARATIONS.labels(outcome.status).inc()
    metrics.LINES.labels(outcome.status).inc(outcome.lines)
    for err in outcome.errors:
        metrics.REJECTIONS.labels(err.code).inc()
    if outcome.assessed is not None:
        for branch, amount in outcome.assessed.totals.by_branch.items():
            fund = {
                "PF": "INPS",
                "ATMP": "INPS",
                "PVID": "INPS",
                "RETRAITE": "CMSS",
                "AMO": "CANAM",
            }.get(branch, "?")
            metrics.CONTRIBUTIONS.labels(branch, fund).inc(amount)
        latency = (datetime.now(UTC) - outcome.assessed.submitted_at).total_seconds()
        metrics.END_TO_END.labels("assessed").observe(max(latency, 0.0))


async def _flush(futures: list[asyncio.Future[object]]) -> None:
    # Outputs must be acknowledged before the batch's offsets are committed.
    await asyncio.gather(*futures)


@app.agent(submitted_topic(app, settings))
async def assess(stream: faust.StreamT) -> None:
    producer = app.producer
    async for events in stream.take_events(200, within=0.2):
        started = time.perf_counter()
        futures = []
        for event in events:
            msg = event.message
            try:
                outcome = handlers.assess_submitted(msg.value, ruleset)
            except Exception as exc:  # poison message: park it, keep the partition flowing
                log.warning(
                    "declaration at %s/%s/%s to DLQ: %s", msg.topic, msg.partition, msg.offset, exc
                )
                key, value = dead_letter(
                    service=SERVICE,
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    key=msg.key,
                    value=msg.value,
                    error=exc,
                )
                futures.append(
                    await producer.send(
                        topic("kalo.dlq", settings), key.encode(), value, None, None, None
                    )
                )
                metrics.DLQ.labels(SERVICE, msg.topic).inc()
                continue
            for out in outcome.messages:
                futures.append(
                    await producer.send(
                        topic(out.topic, settings), out.key.encode(), out.value, None, None, None
                    )
                )
            _observe(outcome)
        await _flush(futures)
        metrics.PROCESSING.labels(SERVICE).observe(time.perf_counter() - started)
