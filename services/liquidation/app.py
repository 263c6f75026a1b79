"""The liquidation, built from its settings when it starts: the faust app, its agent, the
careers' pool, the outputs' producer, the ruleset. Nothing is built at import."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust

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
from services.liquidation import handlers, metrics
from services.liquidation.adapters import SERVICE, KafkaDeadLetters, KafkaSender, PgCareers
from services.rules import Ruleset, load_ruleset

log = logging.getLogger(__name__)


class Resources:
    """The careers' pool, opened on the first batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._careers: PgCareers | None = None

    async def careers(self) -> PgCareers:
        if self._careers is None:
            pool = await connect_pool(service="liquidation", settings=self.settings, min_size=1, max_size=2)
            self._careers = PgCareers(pool, self.settings)
        return self._careers


def create_app(settings: Settings | None = None, ruleset: Ruleset | None = None) -> faust.App:
    s = settings or get_settings()
    rules = ruleset or load_ruleset(Path(s.rules_dir) if s.rules_dir else None)
    app = stream_app(s, "liquidation", web_port=s.liquidation_web_port, batch=s.liquidation_batch)
    resources = Resources(s)
    outputs = Outputs(s, SERVICE, rules.id, rules.files)
    max_output_bytes = s.max_message_bytes - 65_536  # room for the record's key and headers

    async def process(messages: list[handlers.Message]) -> None:
        started = time.perf_counter()
        sender = KafkaSender(await outputs.producer(), s)
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
        metrics.STREAM.batch.observe(took)
        log.info("%d claims liquidated in %.3f s", len(messages), took)

    source = topic("kalo.pensions.claims", s)
    install_batch_agent(app, source, batch=s.liquidation_batch, consumed=_message, process=process)
    install_lag_gauge(app, metrics.STREAM)
    install_pages(app, SERVICE, s)
    app.conf.kalo_settings = s  # type: ignore[attr-defined]
    return app


def _message(record: Any) -> handlers.Message:
    return handlers.Message(record.topic, record.partition, record.offset, record.key, record.value or b"")


def observe(outcomes: list[handlers.Outcome]) -> None:
    """Metrics of a batch, added once per label."""
    decisions: Counter[tuple[str, str]] = Counter()
    now = datetime.now(UTC)
    end_to_end = metrics.STREAM.end_to_end
    assert end_to_end is not None
    for outcome in outcomes:
        decisions[(outcome.regime, outcome.decision)] += 1
        if outcome.filed_at is not None:
            end_to_end.observe(max((now - outcome.filed_at).total_seconds(), 0.0))
    for (regime, decision), n in decisions.items():
        metrics.LIQUIDATIONS.labels(regime, decision).inc(n)


def run(settings: Settings | None = None) -> None:
    run_worker(create_app(settings), "kalo-liquidation")
