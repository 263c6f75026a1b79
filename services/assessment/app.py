"""The assessment, built from its settings when it starts: the faust app, its agent, its
registry, its producer. Nothing is built at import."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

from contracts.declarations import ITEM_COLUMNS
from services.assessment import handlers, metrics
from services.assessment.adapters import SERVICE, KafkaDeadLetters, KafkaSender, PgRegistry
from services.common.db import connect_pool
from services.common.faust_runtime import (
    Outputs,
    install_batch_agent,
    install_lag_gauge,
    install_pages,
    run_worker,
    stream_app,
)
from services.common.kafka import topic
from services.common.settings import Settings, get_settings
from services.rules import Ruleset, load_ruleset

FUND_OF_BRANCH = {c.split(":")[0]: c.split(":")[1] for c in ITEM_COLUMNS}


class Resources:
    """The registry's pool, opened on the first batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registry: PgRegistry | None = None

    async def registry(self) -> PgRegistry:
        if self._registry is None:
            pool = await connect_pool(service="assessment", settings=self.settings, min_size=1, max_size=2)
            self._registry = PgRegistry(pool)
        return self._registry


def create_app(settings: Settings | None = None, ruleset: Ruleset | None = None) -> faust.App:
    s = settings or get_settings()
    rules = ruleset or load_ruleset(Path(s.rules_dir) if s.rules_dir else None)
    app = stream_app(s, "assessment", web_port=s.assessment_web_port, batch=s.assessment_batch)
    resources = Resources(s)
    outputs = Outputs(s, SERVICE, rules.id, rules.files)
    max_output_bytes = s.max_message_bytes - 65_536  # room for the record's key and headers

    async def process(messages: list[handlers.Message]) -> None:
        started = time.perf_counter()
        sender = KafkaSender(await outputs.producer(), s)
        outcomes = await handlers.assess_batch(
            messages,
            rules,
            registry=await resources.registry(),
            sender=sender,
            dead_letters=KafkaDeadLetters(sender),
            max_output_bytes=max_output_bytes,
        )
        observe(outcomes)
        metrics.STREAM.batch.observe(time.perf_counter() - started)

    source = topic("kalo.declarations.submitted", s)
    install_batch_agent(app, source, batch=s.assessment_batch, consumed=_message, process=process)
    install_lag_gauge(app, metrics.STREAM)
    install_pages(app, SERVICE, s)
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
    end_to_end = metrics.STREAM.end_to_end
    assert end_to_end is not None
    for outcome in outcomes:
        declarations[outcome.status] += 1
        lines[outcome.status] += outcome.lines
        errors.update(err["code"] for err in outcome.errors)
        francs.update(outcome.by_branch)
        latency = (now - outcome.submitted_at).total_seconds()
        end_to_end.observe(max(latency, 0.0))
    for status, n in declarations.items():
        metrics.DECLARATIONS.labels(status).inc(n)
    for status, n in lines.items():
        metrics.LINES.labels(status).inc(n)
    for code, n in errors.items():
        metrics.ERRORS.labels(code).inc(n)
    for branch, amount in francs.items():
        metrics.CONTRIBUTIONS.labels(branch, FUND_OF_BRANCH.get(branch, "?")).inc(amount)


def run(settings: Settings | None = None) -> None:
    run_worker(create_app(settings), "kalo-assessment")
