"""The assessment's batch handler on in-memory fakes of its ports: a message that fails on its
own is parked and the others are assessed; an outage is raised for the whole batch."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.assessment.handlers import EmployerRecord, Message, OutputTooLarge, assess_batch
from services.rules import load_ruleset
from tests.support.submitted import submitted_event

RULESET = load_ruleset()
AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


class Boom:
    """A registry value that breaks whoever reads it: an unexpected exception in the handler."""

    def __bool__(self) -> bool:
        raise RuntimeError("boom")


class FakeRegistry:
    def __init__(self, *, refuse: str | None = None, outage: bool = False) -> None:
        self.records = {f"E{i}": EmployerRecord(f"E{i}", "INPS", 2, "monthly", True) for i in range(1, 6)}
        self.records["EBOOM"] = EmployerRecord("EBOOM", "INPS", 2, "monthly", Boom())  # type: ignore[arg-type]
        self.refuse = refuse  # an employer id whose lookup fails as PostgreSQL refusing a text
        self.outage = outage
        self.lookups: list[list[str]] = []

    async def employers(self, ids: Iterable[str]) -> dict[str, EmployerRecord]:
        wanted = sorted(set(ids))
        self.lookups.append(wanted)
        if self.outage:
            raise ConnectionRefusedError("PostgreSQL is away")
        if self.refuse in wanted:
            raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")
        return {i: self.records[i] for i in wanted if i in self.records}

    async def known_workers(self, worker_ids: list[str]) -> set[str]:
        return set()


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


def message(offset: int, employer_id: str, lines: int = 1, *, raw: bytes | None = None) -> Message:
    if raw is None:
        raw = (
            submitted_event(
                declaration_id=f"D{offset}",
                employer={"id": employer_id, "regime": "INPS", "risk_class": 2, "filing": "monthly"},
                period="2026-10",
                lines=[
                    {"worker_id": f"W{i}", "category": "salarie", "days_worked": 30, "base_salary": 100_000}
                    for i in range(lines)
                ],
                submitted_at=AT,
                payload_sha256="0" * 64,
            )
            .model_dump_json()
            .encode()
        )
    return Message("kalo.declarations.submitted", 0, offset, employer_id.encode(), raw)


async def run(messages: list[Message], registry: FakeRegistry, max_output_bytes: int = 10**7) -> Any:
    sender, parked = FakeSender(), FakeDeadLetters()
    outcomes = await assess_batch(
        messages,
        RULESET,
        registry=registry,
        sender=sender,
        dead_letters=parked,
        max_output_bytes=max_output_bytes,
    )
    decided = {o.declaration_id: o.status for o in outcomes}
    return decided, [(m.offset, type(e).__name__) for m, e in parked.parked], sender


async def test_a_batch_is_assessed_and_every_output_flushed() -> None:
    decided, parked, sender = await run(
        [message(1, "E1"), message(2, "E2"), message(3, "E9")], FakeRegistry()
    )
    assert decided == {"D1": "accepted", "D2": "accepted", "D3": "rejected"}  # E9: UNKNOWN_EMPLOYER
    assert parked == [] and sender.pending == []
    topics = [t for t, _, _ in sender.sent]
    assert topics.count("kalo.audit") == 3 and topics.count("kalo.declarations.assessed") == 2


async def test_undecodable_bytes_are_parked_and_the_others_assessed() -> None:
    decided, parked, _ = await run([message(1, "E1"), message(2, "E2", raw=b"\x00 not json")], FakeRegistry())
    assert decided == {"D1": "accepted"}
    assert parked == [(2, "JSONDecodeError")]


async def test_a_lookup_that_fails_for_one_message_parks_only_that_message() -> None:
    registry = FakeRegistry(refuse="E3")
    decided, parked, sender = await run([message(1, "E1"), message(2, "E3"), message(3, "E2")], registry)
    assert decided == {"D1": "accepted", "D3": "accepted"}
    assert parked == [(2, "CharacterNotInRepertoireError")]
    assert registry.lookups[0] == ["E1", "E2", "E3"]  # the whole batch first, then one by one
    assert [t for t, _, _ in sender.sent].count("kalo.dlq") == 0  # parking goes through the port


async def test_an_unexpected_exception_in_the_handler_parks_that_declaration() -> None:
    decided, parked, _ = await run([message(1, "EBOOM"), message(2, "E1")], FakeRegistry())
    assert decided == {"D2": "accepted"}
    assert parked == [(1, "RuntimeError")]


async def test_an_output_too_large_for_kafka_parks_the_declaration() -> None:
    decided, parked, sender = await run(
        [message(1, "E1", lines=400), message(2, "E2", lines=1)], FakeRegistry(), max_output_bytes=20_000
    )
    assert decided == {"D2": "accepted"}
    assert parked == [(1, OutputTooLarge.__name__)]
    assert all(len(v) <= 20_000 for _, _, v in sender.sent)


async def test_an_outage_is_raised_for_the_batch_to_be_retried_and_nothing_is_parked() -> None:
    registry = FakeRegistry(outage=True)
    sender, parked = FakeSender(), FakeDeadLetters()
    with pytest.raises(ConnectionRefusedError):
        await assess_batch(
            [message(1, "E1")],
            RULESET,
            registry=registry,
            sender=sender,
            dead_letters=parked,
            max_output_bytes=10**7,
        )
    assert parked.parked == [] and sender.sent == []
