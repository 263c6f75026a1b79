"""One record PostgreSQL refuses never stalls the ledger: that record goes to the DLQ with its
error and bytes, the records around it (same partition, same batch) are applied."""

from __future__ import annotations

import asyncio
import base64
import time

import asyncpg

from services.common import kafka
from tests.integration.conftest import Stack
from tests.integration.helpers import read_all
from tests.unit.test_ledger_batches import LINE, assessed_envelope


async def test_a_record_postgres_refuses_goes_to_the_dlq_and_the_next_is_applied(
    fresh: tuple[Stack, asyncpg.Connection],
) -> None:
    stack, conn = fresh
    line = list(LINE)
    bad_line = [f"W\x00{'x' * 3}", *line[1:]]  # PostgreSQL text cannot hold a NUL
    events = [
        assessed_envelope("D-iso-1", "EISO", "2026-01", 0, [line]),
        assessed_envelope("D-iso-2", "EISO", "2026-02", 1, [bad_line]),
        assessed_envelope("D-iso-3", "EISO", "2026-03", 2, [line]),
    ]
    values = [e.model_dump_json().encode() for e in events]
    name = kafka.topic("kalo.declarations.assessed", stack.settings)
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:  # one key, one partition, produced before the ledger starts: one batch
        for value in values:
            await producer.send(name, value, key=b"EISO")
        await producer.flush()
    finally:
        await producer.stop()
    stack.start("ledger")

    deadline = time.monotonic() + 60
    while True:
        applied = {
            r["declaration_id"]
            for r in await conn.fetch(
                "SELECT declaration_id FROM ledger.declaration_outcomes WHERE event_id IS NOT NULL"
            )
        }
        if {"D-iso-1", "D-iso-3"} <= applied or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    assert applied == {"D-iso-1", "D-iso-3"}, stack.log_tail("ledger")
    assert await conn.fetchval("SELECT count(*) FROM ledger.careers WHERE declaration_id = 'D-iso-3'") == 1

    letters = [e["data"] for e in await read_all(stack.settings, "kalo.dlq", seconds=2)]
    assert len(letters) == 1, letters
    assert base64.b64decode(letters[0]["value_b64"]) == values[1]
    assert letters[0]["topic"] == name and "0x00" in letters[0]["error"], letters[0]["error"]
    # Its offset was committed with the others: a restart does not apply or dead-letter it again.
    stored = await conn.fetchval(
        "SELECT sum(next_offset) FROM ledger.consumer_offsets WHERE consumer = 'kalo-ledger' AND topic = $1",
        name,
    )
    assert stored == 3
