"""The liquidation's handlers on in-memory fakes of their ports: each claim liquidated by
services/rules on its career as of the batch's point, a business mistake rejected with its
reason (never parked), bytes that are not a claim parked while the others are liquidated, an
outage raised for the whole batch, the same claim always giving the same event ids."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import Envelope, derived_id, wrap
from contracts.pensions import PensionClaimFiled, PensionLiquidated, month_sources, source_runs
from services.liquidation.handlers import (
    Career,
    CareerRows,
    Message,
    Rows,
    Snapshot,
    liquidate_batch,
    merge_career,
)
from services.rules import liquidate_claim, load_ruleset
from services.rules.dates import add_months, period_text

RULESET = load_ruleset()
READ_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
OFFSETS = {"kalo.declarations.assessed": {"0": 12}, "kalo.careers.imported": {"0": 3}}


def months(first: date, count: int, base: int) -> list[tuple[str, int]]:
    return [(period_text(add_months(first, k)), base) for k in range(count)]


def rows(entries: list[tuple[str, str, int]]) -> Rows:
    return Rows(*(list(c) for c in zip(*entries, strict=True))) if entries else Rows()


class FakeCareers:
    def __init__(
        self, careers: dict[str, Career], *, refuse: str | None = None, outage: bool = False
    ) -> None:
        self.careers = careers
        self.refuse = refuse
        self.outage = outage
        self.reads: list[list[str]] = []

    async def read(self, worker_ids: list[str]) -> Snapshot:
        self.reads.append(worker_ids)
        if self.outage:
            raise ConnectionRefusedError("PostgreSQL is away")
        if self.refuse in worker_ids:
            raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")
        return Snapshot({w: self.careers[w] for w in worker_ids if w in self.careers}, READ_AT, OFFSETS)


class FakeSender:
    def __init__(self) -> None:
        self.pending: list[tuple[str, str, bytes]] = []
        self.sent: list[tuple[str, str, bytes]] = []

    async def send(self, registry_name: str, key: str, value: bytes) -> None:
        self.pending.append((registry_name, key, value))

    async def flush(self) -> None:
        self.sent += self.pending
        self.pending = []


class FakeDeadLetters:
    def __init__(self) -> None:
        self.parked: list[tuple[Message, BaseException]] = []

    async def park(self, message: Message, error: BaseException) -> None:
        self.parked.append((message, error))


def claim(offset: int, worker_id: str, **fields: Any) -> Message:
    data = PensionClaimFiled(
        claim_id=f"C-{offset}",
        worker_id=worker_id,
        regime=fields.pop("regime", "INPS"),
        category=fields.pop("category", "salarie"),
        birth_date=date(1966, 3, 10),
        effective_date=date(2026, 12, 1),
        filed_by="0123456789abcdef",
        filed_by_label="INPS back office",
        filed_at=READ_AT,
        **fields,
    )
    event = wrap(
        data, producer="gateway", correlation_id=data.claim_id, event_id=derived_id(data.claim_id, "x")
    )
    return Message("kalo.pensions.claims", 0, offset, worker_id.encode(), event.model_dump_json().encode())


SEVEN = months(date(2001, 12, 1), 300, 200_000)
CAREERS = {
    # RULES.md §3.3 example 7: 300 months at 200,000; the last 3 assessed by Kalo, the others
    # imported, one of them from two employers (added), one overlapped by Kalo's (left out).
    "W7": CareerRows(
        assessed=rows([(p, "E1", b) for p, b in SEVEN[-3:]]),
        imported=rows(
            [(p, "OLD", b) for p, b in SEVEN[:-4]]
            + [(SEVEN[-4][0], "OLD", 120_000), (SEVEN[-4][0], "OLD2", 80_000), (SEVEN[-1][0], "E1", 999)]
        ),
    ),
    "W10": CareerRows(imported=rows([(p, "OLD", b) for p, b in months(date(2018, 1, 1), 100, 120_000)])),
}


def outputs(sender: FakeSender, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for t, _, v in sender.sent if t == topic]


def rules_say(message: Message, career: Career) -> dict[str, Any]:
    doc = orjson.loads(message.value)["data"]
    keys = ("claim_id", "worker_id", "regime", "category", "grade", "birth_date", "effective_date")
    return liquidate_claim(
        {**{k: doc[k] for k in keys}, "career": [{"period": p, "base": b} for p, b in career.months]}, RULESET
    )


async def run(messages: list[Message], careers: FakeCareers) -> tuple[FakeSender, FakeDeadLetters, list[Any]]:
    sender, dead = FakeSender(), FakeDeadLetters()
    outcomes = await liquidate_batch(
        messages, RULESET, careers=careers, sender=sender, dead_letters=dead, max_output_bytes=1_000_000
    )
    return sender, dead, outcomes


async def test_each_claim_is_liquidated_by_the_rules_on_its_career_as_of_the_batch_point() -> None:
    batch = [claim(1, "W7"), claim(2, "W10")]
    careers = FakeCareers(CAREERS)
    sender, dead, outcomes = await run(batch, careers)
    assert not dead.parked and careers.reads == [["W10", "W7"]]  # one read for the batch
    liquidated = outputs(sender, "kalo.pensions.liquidations")
    assert [e["data"]["claim_id"] for e in liquidated] == ["C-1", "C-2"]
    for message, event in zip(batch, liquidated, strict=True):
        Envelope[PensionLiquidated].model_validate(event)  # the contract holds
        career = merge_career(CAREERS[event["data"]["worker_id"]])
        assert event["data"]["liquidation"] == rules_say(message, career)
        assert event["data"]["career"] == [list(m) for m in career.months]
        assert event["data"]["career_sources"] == [list(r) for r in career.sources]
        sources = month_sources(event["data"]["career"], event["data"]["career_sources"])
        assert list(sources) == [p for p, _ in career.months]
        assert event["data"]["as_of"]["ledger_offsets"] == OFFSETS
        assert event["data"]["as_of"]["read_at"] == "2026-11-30T09:00:00Z"
        assert event["data"]["claim"]["filed_by"] == "0123456789abcdef"
        assert event["id"] == str(derived_id(orjson.loads(message.value)["id"], PensionLiquidated.TYPE))
    seven = liquidated[0]["data"]["liquidation"]
    assert (seven["monthly_pension"], seven["amo_deduction"], seven["net_monthly_pension"]) == (
        100_000,
        750,
        99_250,
    )
    assert liquidated[0]["data"]["as_of"]["imported_rows"] == 298
    # Imported history, then the months Kalo assessed (the one imported there left out).
    assert liquidated[0]["data"]["career_sources"] == [
        [SEVEN[0][0], SEVEN[-4][0], "imported"],
        [SEVEN[-3][0], SEVEN[-1][0], "assessed"],
    ]
    assert liquidated[1]["data"]["liquidation"]["lump_sum"] == 960_000  # example 10
    assert [(o.claim_id, o.decision) for o in outcomes] == [("C-1", "pension"), ("C-2", "lump_sum")]
    audit = outputs(sender, "kalo.audit")
    assert [a["data"]["subject"] for a in audit] == ["C-1", "C-2"]
    assert {a["data"]["actor"] for a in audit} == {"liquidation"}
    payload = sender.sent[0][2].split(b',"data":', 1)[1][:-1]
    assert audit[0]["data"]["output_sha256"] == hashlib.sha256(payload).hexdigest()
    assert audit[0]["data"]["input_sha256"] == hashlib.sha256(batch[0].value).hexdigest()
    assert all(key == "W7" for topic, key, _ in sender.sent[:1])  # keyed by worker


async def test_the_same_claim_twice_gives_the_same_event_ids() -> None:
    first, _, _ = await run([claim(1, "W7")], FakeCareers(CAREERS))
    again, _, _ = await run([claim(1, "W7")], FakeCareers(CAREERS))
    assert [orjson.loads(v)["id"] for *_, v in first.sent] == [orjson.loads(v)["id"] for *_, v in again.sent]


async def test_business_mistakes_are_rejected_liquidations_never_dead_letters() -> None:
    batch = [
        claim(1, "NOBODY"),  # unknown worker: no career at all
        claim(2, "W7", regime="CMSS", category="fonctionnaire"),  # no grade
        claim(3, "W7", regime="IPRES"),
        claim(4, "W7", category="fonctionnaire"),
    ]
    sender, dead, _ = await run(batch, FakeCareers(CAREERS))
    assert not dead.parked
    reasons = [e["data"]["liquidation"]["reason"] for e in outputs(sender, "kalo.pensions.liquidations")]
    assert reasons == ["NO_CAREER", "UNKNOWN_GRADE", "UNKNOWN_REGIME", "CATEGORY_NOT_ALLOWED"]
    for event in outputs(sender, "kalo.pensions.liquidations"):
        assert event["data"]["liquidation"]["decision"] == "rejected"


async def test_bytes_that_are_not_a_claim_are_parked_and_the_rest_liquidated() -> None:
    poison = Message("kalo.pensions.claims", 0, 2, b"x", b"\x00\xff not json")
    not_a_claim = Message("kalo.pensions.claims", 0, 3, b"x", b'{"id": "nope"}')
    sender, dead, _ = await run([claim(1, "W7"), poison, not_a_claim, claim(4, "W10")], FakeCareers(CAREERS))
    assert [m.offset for m, _ in dead.parked] == [2, 3]
    assert [e["data"]["claim_id"] for e in outputs(sender, "kalo.pensions.liquidations")] == ["C-1", "C-4"]


async def test_a_batch_whose_careers_cannot_be_read_is_liquidated_one_by_one() -> None:
    careers = FakeCareers(CAREERS, refuse="W\u00e9")
    sender, dead, _ = await run([claim(1, "W7"), claim(2, "W\u00e9"), claim(3, "W10")], careers)
    assert [m.offset for m, _ in dead.parked] == [2]
    assert [e["data"]["claim_id"] for e in outputs(sender, "kalo.pensions.liquidations")] == ["C-1", "C-3"]


async def test_an_outage_is_raised_for_the_whole_batch_and_nothing_parked() -> None:
    sender, dead = FakeSender(), FakeDeadLetters()
    with pytest.raises(ConnectionRefusedError):
        await liquidate_batch(
            [claim(1, "W7")],
            RULESET,
            careers=FakeCareers(CAREERS, outage=True),
            sender=sender,
            dead_letters=dead,
            max_output_bytes=1_000_000,
        )
    assert not dead.parked and not sender.sent


async def test_an_output_too_large_for_kafka_is_parked() -> None:
    sender, dead = FakeSender(), FakeDeadLetters()
    await liquidate_batch(
        [claim(1, "W7"), claim(2, "W10")],
        RULESET,
        careers=FakeCareers(CAREERS),
        sender=sender,
        dead_letters=dead,
        max_output_bytes=6_000,  # W7's 300 months do not fit, W10's 100 do
    )
    assert [m.offset for m, _ in dead.parked] == [1]
    assert [e["data"]["claim_id"] for e in outputs(sender, "kalo.pensions.liquidations")] == ["C-2"]


def test_the_career_adds_employers_per_month_and_kalo_s_month_wins_over_an_import() -> None:
    career = merge_career(
        CareerRows(
            assessed=rows([("2026-10", "E1", 300), ("2026-10", "E2", 50), ("2026-09", "E1", 100)]),
            imported=rows(
                [
                    ("2026-10", "E1", 999),
                    ("2026-08", "E1", 70),
                    ("2026-08", "E9", 30),
                    ("2001-01", "OLD", 0),
                    ("2026-09", "E5", 10),  # another employer's month: imported beside assessed
                ]
            ),
        )
    )
    # 2026-10's imported row is Kalo's month (left out): that month is assessed only.
    assert career == Career(
        [("2001-01", 0), ("2026-08", 100), ("2026-09", 110), ("2026-10", 350)],
        assessed_rows=3,
        imported_rows=4,
        sources=[
            ("2001-01", "2026-08", "imported"),
            ("2026-09", "2026-09", "both"),
            ("2026-10", "2026-10", "assessed"),
        ],
    )
    assert merge_career(CareerRows()) == Career([])
    assert merge_career(CareerRows(imported=rows([("2001-02", "A", 5), ("2001-01", "A", 7)]))).months == [
        ("2001-01", 7),
        ("2001-02", 5),
    ]


MONTHS = [f"{2000 + k // 12}-{k % 12 + 1:02d}" for k in range(60)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(MONTHS), st.sampled_from(["A", "B"])), unique=True),
    st.lists(st.tuples(st.sampled_from(MONTHS), st.sampled_from(["A", "C"])), unique=True),
)
def test_each_month_s_source_is_where_its_counted_rows_come_from(
    imported: list[tuple[str, str]], assessed: list[tuple[str, str]]
) -> None:
    career = merge_career(
        CareerRows(
            assessed=rows([(p, e, 10) for p, e in assessed]),
            imported=rows([(p, e, 5) for p, e in imported]),
        )
    )
    kalo = set(assessed)
    from_history = {p for p, e in imported if (p, e) not in kalo}  # Kalo's own month wins
    from_kalo = {p for p, _ in assessed}
    kinds = {(True, True): "both", (True, False): "imported", (False, True): "assessed"}
    per_month = [(p, kinds[p in from_history, p in from_kalo]) for p, _ in career.months]
    assert career.sources == source_runs(per_month)
    assert month_sources(career.months, career.sources) == dict(per_month)
