"""Pension liquidations as the liquidation service emits them, computed by services/rules
(`liquidate_claim`) in the shape of contracts/pensions.py, for the control commission's
tests (unit, integration, browser) until the liquidation service produces them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from contracts.envelope import Envelope, wrap
from contracts.pensions import CareerAsOf, PensionLiquidated
from services.common import kafka
from services.common.hashing import api_key_hash
from services.common.settings import Settings
from services.rules import liquidate_claim, load_ruleset

RULESET = load_ruleset()
FILER = api_key_hash("kalo_back_filer")
LIQUIDATIONS = "kalo.pensions.liquidations"


def months(start: str, count: int, base: int) -> list[list[Any]]:
    year, month = (int(x) for x in start.split("-"))
    out = []
    for _ in range(count):
        out.append([f"{year:04d}-{month:02d}", base])
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


# Example 7 of RULES.md: age 60, 300 months at 200,000 → 100,000 a month, no flag.
PLAIN = months("2001-12", 300, 200_000)
# The last 36 months at 151,000 > 1.5 × the 60 before them at 100,000: SALARY_SPIKE.
SPIKE = months("2001-12", 204, 50_000) + months("2018-12", 60, 100_000) + months("2023-12", 36, 151_000)


def liquidated(
    claim_id: str,
    career: Sequence[Sequence[Any]],
    *,
    worker_id: str | None = None,
    birth_date: str = "1966-03-10",
    effective_date: str = "2026-12-01",
    filed_by: str | None = FILER,
    tamper: Mapping[str, Any] | None = None,
    sources: Sequence[tuple[str, str, str]] | None = None,
    as_of: CareerAsOf | None = None,
) -> Envelope[PensionLiquidated]:
    """A `pension.liquidated` event computed by services/rules (`liquidate_claim`), in the
    shape of contracts/pensions.py; `sources`: its career_sources (None: as liquidations made
    before they were carried)."""
    claim = {
        "claim_id": claim_id,
        "worker_id": worker_id or f"W-{claim_id}",
        "regime": "INPS",
        "category": "salarie",
        "grade": None,
        "birth_date": birth_date,
        "effective_date": effective_date,
        "filed_by": filed_by,
    }
    snapshot = [[p, b] for p, b in career]
    liquidation = liquidate_claim(
        {**claim, "career": [{"period": p, "base": b} for p, b in snapshot]}, RULESET
    )
    liquidation.update(tamper or {})
    data = PensionLiquidated(
        claim_id=claim_id,
        worker_id=claim["worker_id"],
        ruleset=RULESET.id,
        claim=claim,
        career=[(p, b) for p, b in snapshot],
        liquidation=liquidation,
        career_sources=None if sources is None else list(sources),
        as_of=as_of,
    )
    return wrap(
        data,
        producer="liquidation",
        correlation_id=claim_id,
        causation_id=uuid.uuid5(uuid.NAMESPACE_URL, claim_id),
    )


async def produce(settings: Settings, *events: Envelope[PensionLiquidated]) -> None:
    """The events on kalo.pensions.liquidations, keyed by worker id."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        name = kafka.topic(LIQUIDATIONS, settings)
        for e in events:
            await producer.send_and_wait(name, e.model_dump_json().encode(), key=e.data.worker_id.encode())
    finally:
        await producer.stop()
