"""The ledger on the real stack: poison → DLQ while the partition flows, `kalo dlq list` /
`kalo dlq replay`, and `kalo ledger rebuild` giving back the same rows."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import TopicPartition

from contracts.declarations import DeclarationAssessed, Totals
from contracts.envelope import wrap
from contracts.pensions import CareerImported
from services.common import dlq_ops, kafka
from tests.integration.conftest import ROOT, Stack, isolated_stack
from tests.integration.helpers import kalo, read_all
from tests.integration.test_assessment_ledger import (
    SUBMITTED_AT,
    expected,
    ledger_state,
    make_month,
    produce,
    register,
    submitted_bytes,
    wait_applied,
)
from tests.support.control import liquidated
from tests.support.control import produce as produce_liquidations
from tests.support.terminal import run_in_pty


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def flowing(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Stack, asyncpg.Connection, list[dict[str, Any]]]]:
    """A sandbox where 300 declarations (some rejected, one corrected) went through."""
    async with isolated_stack(tmp_path_factory.mktemp("ledger-ops")) as stack:
        conn = await asyncpg.connect(stack.settings.dsn)
        try:
            employers = await register(conn, 20)
            docs = make_month(300, employers, seed=5)
            original = next(d for d in docs if d["employer"]["regime"] == "INPS")
            correction = {
                **original,
                "declaration_id": "D-it-correction",
                "replaces": original["declaration_id"],
                "lines": [{**original["lines"][0], "base_salary": 777_000, "days_worked": 30}],
            }
            stack.start("ledger")
            stack.start("assessment")
            await produce(stack, docs)
            await wait_applied(conn, len(docs), seconds=120)
            await produce_submitted(stack, correction, submitted_at=SUBMITTED_AT.replace(hour=10))
            await wait_applied(conn, len(docs) + 1, seconds=60)
            yield stack, conn, [*docs, correction]
        finally:
            await conn.close()


async def produce_submitted(stack: Stack, doc: dict[str, Any], *, submitted_at: datetime) -> None:
    await produce(stack, [doc], submitted_at=submitted_at)


async def send(stack: Stack, topic: str, key: str, value: bytes) -> tuple[int, int]:
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        meta = await producer.send_and_wait(kafka.topic(topic, stack.settings), value, key=key.encode())
        return meta.partition, meta.offset
    finally:
        await producer.stop()


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the ledger derives, without the wall-clock columns."""
    queries = {
        "declarations": "SELECT declaration_id, employer_id, period, replaces, status, line_count, ruleset,"
        " totals::text, report::text, event_id FROM ledger.declaration_outcomes",
        "employer_periods": "SELECT * FROM ledger.employer_periods",
        "employer_dues": "SELECT * FROM ledger.employer_dues",
        "careers": "SELECT * FROM ledger.careers",
        "workers": "SELECT worker_id, first_employer_id, first_period, first_declaration_id, status"
        " FROM ledger.workers",
    }
    return {name: sorted(tuple(r) for r in await conn.fetch(q)) for name, q in queries.items()}


def a_second_original(doc: dict[str, Any], declaration_id: str) -> bytes:
    """An assessed event that decodes but cannot be applied: a second original of a month."""
    data = DeclarationAssessed(
        declaration_id=declaration_id,
        employer_id=doc["employer"]["id"],
        regime=doc["employer"]["regime"],
        period=doc["period"],
        ruleset="r",
        submitted_at=SUBMITTED_AT,
        due_date="2026-11-15",
        months_late=0,
        surcharge=0,
        totals=Totals(employer=1, employee=0, total=1, by_branch={"PF": 1}, by_fund={"INPS": 1}),
        rates={},
        lines=[],
    )
    return wrap(data, producer="test", correlation_id=declaration_id).model_dump_json().encode()


async def test_a_correction_counts_once_in_the_ledger(flowing) -> None:
    _, conn, docs = flowing
    *month, correction = docs
    corrected = [d for d in month if d["declaration_id"] != correction["replaces"]] + [correction]
    want = expected(corrected)
    state = await ledger_state(conn)
    # Both stay among the declaration outcomes (the original is still a record); the account and
    # the careers hold the corrective only.
    original_total = await conn.fetchval(
        "SELECT (totals->>'total')::bigint FROM ledger.declaration_outcomes WHERE declaration_id = $1",
        correction["replaces"],
    )
    assert state["total"] == want["total"] + original_total
    assert state["careers"] == want["careers"] and state["dues"] == want["dues"]
    assert await conn.fetchval("SELECT sum(total) FROM ledger.employer_periods") == want["total"]


async def test_poison_on_a_ledger_topic_goes_to_the_dlq_and_the_partition_flows(flowing) -> None:
    stack, conn, docs = flowing
    target = docs[1]
    key = target["employer"]["id"]
    undecodable = b"\x00\x01 not an event"
    unapplicable = a_second_original(target, "D-it-second-original")
    bad = {
        await send(stack, "kalo.declarations.assessed", key, undecodable): undecodable,
        await send(stack, "kalo.declarations.assessed", key, unapplicable): unapplicable,
    }
    # A good declaration behind them on the same partition (same employer key).
    follow = {**target, "declaration_id": "D-it-after-poison", "period": "2026-09"}
    await produce_submitted(stack, follow, submitted_at=SUBMITTED_AT)
    await wait_applied(conn, len(docs) + 1, seconds=60)
    assert await conn.fetchval(
        "SELECT status FROM ledger.declaration_outcomes WHERE declaration_id = 'D-it-after-poison'"
    ) in ("accepted", "rejected")
    assert not await conn.fetchval(
        "SELECT count(*) FROM ledger.declaration_outcomes WHERE declaration_id = 'D-it-second-original'"
    )
    letters = [e for e in await read_all(stack.settings, "kalo.dlq") if e["data"]["service"] == "kalo-ledger"]
    topic = kafka.topic("kalo.declarations.assessed", stack.settings)
    got = {
        (e["data"]["partition"], e["data"]["offset"]): base64.b64decode(e["data"]["value_b64"])
        for e in letters
    }
    assert got == bad
    assert all(e["data"]["topic"] == topic and e["data"]["error"] for e in letters)
    assert any("declarations_one_original" in e["data"]["error"] for e in letters)


async def test_dlq_list_and_replay(flowing) -> None:
    stack, _, docs = flowing
    poison = b"\xff replay me " + uuid.uuid4().hex.encode()
    await send(stack, "kalo.declarations.submitted", docs[0]["employer"]["id"], poison)
    letter = await _wait_letter(stack, poison)
    listed = kalo(stack.env, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert rows[letter["id"]]["service"] == "assessment"
    assert rows[letter["id"]]["bytes"] == len(poison) and rows[letter["id"]]["error"]

    replayed = kalo(stack.env, "dlq", "replay", letter["id"])
    assert replayed.returncode == 0, replayed.stderr
    partition, offset = (int(x) for x in replayed.stdout.split("partition ")[1].split(" offset "))
    consumer = kafka.consumer(group_id=None, settings=stack.settings)
    await consumer.start()
    try:
        tp = TopicPartition(kafka.topic("kalo.declarations.submitted", stack.settings), partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = (await consumer.getmany(tp, timeout_ms=5000))[tp][0]
        assert record.value == poison  # the original bytes, back on their topic
    finally:
        await consumer.stop()
    # Still poison: parked again, from its new position.
    again = await _wait_letter(stack, poison, offset=offset)
    assert again["id"] != letter["id"]
    missing = kalo(stack.env, "dlq", "replay", str(uuid.uuid4()))
    assert missing.returncode == 1 and "no dead letter" in missing.stdout


async def _wait_letter(stack: Stack, value: bytes, offset: int | None = None) -> dict[str, Any]:
    for _ in range(30):
        for e in await read_all(stack.settings, "kalo.dlq", seconds=1):
            if base64.b64decode(e["data"]["value_b64"]) == value and offset in (None, e["data"]["offset"]):
                return e
    raise TimeoutError("the poison never reached kalo.dlq")


async def test_dlq_replay_of_many_sends_each_back_and_prints_only_what_it_did(flowing) -> None:
    stack, _, docs = flowing
    poisons = [b"\xff many " + uuid.uuid4().hex.encode() for _ in range(3)]
    for poison in poisons:
        await send(stack, "kalo.declarations.submitted", docs[0]["employer"]["id"], poison)
    letters = [await _wait_letter(stack, poison) for poison in poisons]
    ids = [letter["id"] for letter in letters]

    unknown = kalo(stack.env, "dlq", "replay", ids[0], str(uuid.uuid4()))
    assert unknown.returncode == 1 and "no dead letter" in unknown.stdout
    assert "replayed" not in unknown.stdout  # every id checked before any is sent

    replayed = kalo(stack.env, "dlq", "replay", *ids)  # piped: no bar, one line per letter
    assert replayed.returncode == 0, replayed.stderr
    lines = replayed.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ids and "\x1b" not in replayed.stdout
    for poison, line in zip(poisons, lines, strict=True):
        offset = int(line.rsplit(" offset ", 1)[1])
        again = await _wait_letter(stack, poison, offset=offset)  # back on its topic, parked again
        assert again["data"]["value_size"] == len(poison)


async def test_rebuild_shows_its_progress_on_a_terminal_only(flowing) -> None:
    stack, conn, _ = flowing
    try:
        # Exit 1 would say the rebuild differs from the live rows: a diff, not what this checks.
        piped = kalo(stack.env, "ledger", "rebuild", "--into", "ledger_piped")
        assert piped.returncode in (0, 1), piped.stderr[-3000:]
        assert piped.stdout.startswith("rebuilt ") and "\x1b" not in piped.stdout
        assert "replaying" not in piped.stdout
        records = int(piped.stdout.split()[1].replace(",", ""))

        status, screen = run_in_pty(
            [sys.executable, "-m", "services.cli", "ledger", "rebuild", "--into", "ledger_tty"],
            env=stack.env,
            cwd=ROOT,
        )
        assert status == piped.returncode, screen[-3000:]
        assert "\x1b[" in screen  # drawn as on a terminal (colours, the bar erased at the end)
        screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
        assert "replaying the ledger's topics" in screen, screen[-3000:]
        assert f"{records}/{records}" in screen  # the bar's last count: every record replayed
        assert f"rebuilt {records:,} records" in screen
    finally:
        for schema in ("ledger_piped", "ledger_tty"):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def test_rebuild_into_a_schema_beside_the_live_projections_and_diff(flowing) -> None:
    """`kalo ledger rebuild --into SCHEMA` replays the topics into copies of the tables while
    the ledger runs; the diff is empty, and names a live row edited by 1 franc."""
    stack, conn, _ = flowing
    try:
        same = kalo(stack.env, "ledger", "rebuild", "--into", "ledger_check", "--json")
        assert same.returncode == 0, same.stdout[-3000:]
        doc = json.loads(same.stdout)
        assert doc["equal"] and doc["tables"]["careers"]["rebuilt"] == doc["tables"]["careers"]["live"] > 0
        row = await conn.fetchrow(
            "SELECT * FROM ledger.employer_dues ORDER BY employer_id, period, fund LIMIT 1"
        )
        edit = (
            "UPDATE ledger.employer_dues SET amount = amount + $4"
            " WHERE employer_id = $1 AND period = $2 AND fund = $3"
        )
        await conn.execute(edit, row["employer_id"], row["period"], row["fund"], 1)
        try:
            off = kalo(stack.env, "ledger", "rebuild", "--into", "ledger_check2", "--json")
        finally:
            await conn.execute(edit, row["employer_id"], row["period"], row["fund"], -1)
        assert off.returncode == 1, off.stderr
        dues = json.loads(off.stdout)["tables"]["employer_dues"]
        assert (dues["only_live"], dues["only_rebuilt"]) == (1, 1)
        assert dues["examples_live"] == [{**dict(row), "amount": row["amount"] + 1}]
        taken = kalo(stack.env, "ledger", "rebuild", "--into", "ledger_check")
        assert taken.returncode == 2 and "exists already" in taken.stdout
    finally:
        for schema in ("ledger_check", "ledger_check2"):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def test_rebuild_gives_the_same_rows(flowing) -> None:
    stack, conn, docs = flowing
    refused = kalo(stack.env, "ledger", "rebuild")
    assert refused.returncode == 1 and "stop it" in refused.stdout
    before = await snapshot(conn)
    assert before["careers"] and before["employer_dues"] and before["workers"]
    stack.stop("ledger", signal.SIGTERM)

    rebuilt = kalo(stack.env, "ledger", "rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    counts = json.loads(rebuilt.stdout.strip().splitlines()[-1])
    assert counts["careers"] == len(before["careers"]) and counts["records"] > len(docs)
    assert await snapshot(conn) == before

    # The ledger resumes after the rebuild's offsets: one new declaration, nothing counted twice.
    stack.start("ledger", name="ledger-after-rebuild")
    extra = {**docs[2], "declaration_id": "D-it-after-rebuild", "period": "2026-08"}
    await produce_submitted(stack, extra, submitted_at=SUBMITTED_AT)
    applied = await conn.fetchval(
        "SELECT count(*) FROM ledger.declaration_outcomes WHERE event_id IS NOT NULL"
    )
    await wait_applied(conn, applied + 1, seconds=60)
    after = await snapshot(conn)
    for table in ("employer_periods", "careers"):
        assert set(before[table]) <= set(after[table])
    assert len(after["declarations"]) == len(before["declarations"]) + 1


async def _values(stack: Stack, name: str, isolation: str) -> list[bytes]:
    """Every record's value on a topic, as a reader at this isolation level sees them."""
    consumer = kafka.consumer(
        kafka.topic(name, stack.settings), group_id=None, settings=stack.settings, isolation_level=isolation
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        quiet_since = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - quiet_since < 2:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                if records:
                    out.extend(r.value or b"" for r in records)
                    quiet_since = asyncio.get_running_loop().time()
        return out
    finally:
        await consumer.stop()


async def outcome(conn: asyncpg.Connection, declaration_id: str, seconds: float = 60) -> str | None:
    """The ledger's status of a declaration once it has one (None after `seconds`)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status: str | None = await conn.fetchval(
            "SELECT status FROM ledger.declaration_outcomes WHERE declaration_id = $1", declaration_id
        )
        if status or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(0.5)


async def test_a_record_of_an_aborted_transaction_is_never_assessed(flowing) -> None:
    """The stream processors read committed records only, as the tracked consumers do: a
    declaration whose transaction was aborted is never assessed, and the next one on its
    partition is."""
    stack, conn, docs = flowing
    base = next(d for d in docs if d["employer"]["regime"] == "INPS" and not d.get("replaces"))
    tag = uuid.uuid4().hex[:8]
    aborted = {**base, "declaration_id": f"D-aborted-{tag}", "period": "2023-06"}
    committed = {**base, "declaration_id": f"D-committed-{tag}", "period": "2023-07"}
    producer = kafka.producer(stack.settings, transactional_id=f"test-aborted-{tag}")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(
            kafka.topic("kalo.declarations.submitted", stack.settings),
            submitted_bytes(aborted),
            key=aborted["employer"]["id"].encode(),
        )
        await producer.abort_transaction()
    finally:
        await producer.stop()
    await produce(stack, [committed])  # the same employer: the same partition, after it
    assert await outcome(conn, committed["declaration_id"]) == "accepted"
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM ledger.declaration_outcomes WHERE declaration_id = $1",
            aborted["declaration_id"],
        )
        == 0
    )


async def test_a_replay_stopped_before_its_audit_record_sends_nothing(flowing, monkeypatch) -> None:
    """`kalo dlq replay` sends a letter and its `dlq.replayed` in one transaction: stopped
    between the two, the bytes it sent are aborted, unseen by every consumer of Kalo's (the
    assessment does not park them again) and no audit record says they were replayed."""
    stack, _, docs = flowing
    poison = b"\xff stopped " + uuid.uuid4().hex.encode()
    await send(stack, "kalo.declarations.submitted", docs[0]["employer"]["id"], poison)
    letter = await _wait_letter(stack, poison)

    def stopped(**_: Any) -> Any:
        raise RuntimeError("stopped before the audit record")

    monkeypatch.setattr(dlq_ops, "audit_event", stopped)
    with pytest.raises(RuntimeError, match="stopped before the audit record"):
        await dlq_ops.replay_many(stack.settings, [letter["id"]])
    # The bytes went out again, in the transaction that was aborted.
    uncommitted = await _values(stack, "kalo.declarations.submitted", "read_uncommitted")
    committed = await _values(stack, "kalo.declarations.submitted", "read_committed")
    assert uncommitted.count(poison) == 2 and committed.count(poison) == 1
    await asyncio.sleep(3)  # time for the assessment to have parked them, had it read them
    letters = [
        e
        for e in await read_all(stack.settings, "kalo.dlq")
        if base64.b64decode(e["data"]["value_b64"]) == poison
    ]
    assert len(letters) == 1
    audits = await read_all(stack.settings, "kalo.audit")
    assert not [
        e
        for e in audits
        if e["data"].get("action") == "dlq.replayed" and e.get("causation_id") == letter["id"]
    ]


_KILLED_INSIDE = """
import asyncio, sys, time
from services.common import dlq_ops
from services.common.settings import Settings

def stuck(**_):
    print("inside", flush=True)
    time.sleep(600)  # between the letter and its audit record, until killed

dlq_ops.audit_event = stuck
asyncio.run(dlq_ops.replay_many(Settings(), [sys.argv[1]]))
"""


async def test_a_replay_killed_inside_its_transaction_holds_its_partition_only_briefly(flowing) -> None:
    """SIGKILL of `kalo dlq replay` between a letter and its audit record: the broker aborts
    the open transaction (its timeout, 10 s), the letter is never read, and the declarations
    behind it on its partition are assessed once it is aborted."""
    stack, conn, docs = flowing
    base = next(d for d in docs if d["employer"]["regime"] == "INPS" and not d.get("replaces"))
    poison = b"\xff killed " + uuid.uuid4().hex.encode()
    await send(stack, "kalo.declarations.submitted", base["employer"]["id"], poison)
    letter = await _wait_letter(stack, poison)
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_INSIDE, letter["id"]],
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as replay:
        assert replay.stdout is not None and replay.stderr is not None
        try:
            first = replay.stdout.readline().strip()
        finally:
            replay.send_signal(signal.SIGKILL)
        errors = replay.stderr.read()
    assert first == "inside", errors
    behind = {**base, "declaration_id": f"D-behind-{uuid.uuid4().hex[:8]}", "period": "2023-08"}
    await produce(stack, [behind])  # the same employer: the same partition, behind the open transaction
    assert await outcome(conn, behind["declaration_id"]) == "accepted"
    letters = await read_all(stack.settings, "kalo.dlq")
    assert [base64.b64decode(e["data"]["value_b64"]) for e in letters].count(poison) == 1


async def test_rebuild_into_a_schema_covers_every_table_and_parks_nothing(flowing) -> None:
    """With careers imported and a liquidation on the ledger's topics too: the rebuild beside
    the live projections copies and compares every table of the ledger's (imports, claims and
    decisions included), and what it cannot apply it lists, parking nothing: only records the
    live ledger parked already, and kalo.dlq keeps its count."""
    stack, conn, _ = flowing
    imported = CareerImported(
        import_id="I-REBUILD",
        worker_id="W-REBUILD",
        imported_at=SUBMITTED_AT,
        entries=[(f"{1990 + k // 12}-{k % 12 + 1:02d}", "E-REBUILD", 150_000) for k in range(24)],
    )
    await send(
        stack,
        "kalo.careers.imported",
        "W-REBUILD",
        wrap(imported, producer="test", correlation_id="I-REBUILD").model_dump_json().encode(),
    )
    career = [(f"{1986 + k // 12}-{k % 12 + 1:02d}", 150_000) for k in range(400)]
    await produce_liquidations(stack.settings, liquidated("C-REBUILD", career, worker_id="W-REBUILD"))
    for _ in range(120):
        applied = await conn.fetchval(
            "SELECT (SELECT count(*) FROM ledger.career_imports WHERE worker_id = 'W-REBUILD')"
            " + (SELECT count(*) FROM ledger.claim_liquidations WHERE claim_id = 'C-REBUILD')"
        )
        if applied == 25:
            break
        await asyncio.sleep(0.5)
    assert applied == 25
    letters = await read_all(stack.settings, "kalo.dlq")
    try:
        done = kalo(stack.env, "ledger", "rebuild", "--into", "ledger_all", "--json")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        doc = json.loads(done.stdout)
        for table in ("career_imports", "career_import_events", "claim_liquidations", "careers"):
            assert doc["tables"][table]["rebuilt"] == doc["tables"][table]["live"] > 0, table
        assert doc["equal"]
        parked = {(e["data"]["topic"], e["data"]["partition"], e["data"]["offset"]) for e in letters}
        assert {(r["topic"], r["partition"], r["offset"]) for r in doc["refused"]} <= parked
        assert doc["refused_count"] == len(doc["refused"])
        assert len(await read_all(stack.settings, "kalo.dlq")) == len(letters)
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS ledger_all CASCADE")
