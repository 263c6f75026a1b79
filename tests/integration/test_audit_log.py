"""The audit store on the real stack (`kalo run audit`): every event of kalo.audit appended
once to the Merkle log, heads signed and published (topic and file), and `kalo audit verify`
detecting each tampering a database superuser can do — one byte changed, a record deleted,
one inserted in the middle, the tail cut off, the table rewritten with consistent hashes —
naming the bad record; the writer's role cannot UPDATE, DELETE or TRUNCATE; a proof made by
`kalo audit prove` checks offline and a corrupted one does not."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from contracts.audit import audit_event
from services.common import kafka
from services.control.audit.app import writer_dsn
from services.control.audit.heads import generate_key
from services.control.audit.records import canonical
from tests.integration.conftest import Stack, isolated_stack
from tests.integration.helpers import kalo

EVENTS = 60


@dataclass
class AuditStack:
    stack: Stack
    conn: asyncpg.Connection
    key: Path
    public_key: Path
    heads_file: Path
    ids: list[uuid.UUID]
    tmp: Path
    frozen: str = ""  # a copy of the database nobody connects to: the tamper tests copy it

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.stack.env,
            "KALO_AUDIT_SIGNING_KEY": str(self.key),
            "KALO_AUDIT_HEADS_FILE": str(self.heads_file),
            **extra,
        }


def events(n: int, start: int = 0) -> list[tuple[uuid.UUID, str, bytes]]:
    out = []
    for i in range(start, start + n):
        subject = f"D-audit-{i}" if i != 5 else '=HYPERLINK("http://x")'
        event_id, value = audit_event(
            action="declaration.assessed",
            subject=subject,
            actor="assessment",
            input_bytes=f"input {i}".encode(),
            output_bytes=f"output {i}".encode(),
            producer="assessment",
            ruleset="rs-0123456789abcdef",
            details={"employer_id": f"E{i % 7}", "total": 1000 * i, "note": "é ünïcode \u2028"},
        )
        out.append((event_id, subject, value))
    return out


async def produce(stack: Stack, batch: list[tuple[uuid.UUID, str, bytes]]) -> None:
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        for _, subject, value in batch:
            await producer.send(kafka.topic("kalo.audit", stack.settings), value, key=subject.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def wait_records(conn: asyncpg.Connection, n: int, heads_file: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        count = await conn.fetchval("SELECT count(*) FROM audit.records")
        signed = (
            [json.loads(x)["tree_size"] for x in heads_file.read_text().splitlines()]
            if heads_file.exists()
            else []
        )
        if count >= n and signed and max(signed) >= n:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"audit store: {count} records, heads {signed[-3:]}, waiting for {n}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def audit(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuditStack]:
    """A sandbox whose audit store appended 60 events (and dropped their duplicates), over a
    restart of the store, then was stopped."""
    tmp = tmp_path_factory.mktemp("audit")
    async with isolated_stack(tmp) as stack:
        key, public_key, _ = generate_key(tmp / "audit.key")
        conn = await asyncpg.connect(stack.settings.dsn)
        a = AuditStack(stack, conn, key, public_key, tmp / "heads.jsonl", [], tmp)
        try:
            env = a.env(KALO_AUDIT_HEAD_EVERY_RECORDS="7", KALO_AUDIT_HEAD_EVERY_S="0.3")
            first, second = events(40), events(EVENTS - 40, start=40)
            stack.start("audit", **env)
            await produce(stack, first + first[:5])  # duplicates are dropped
            await wait_records(conn, 40, a.heads_file)
            stack.stop("audit")
            stack.start("audit", **env)  # resumes on the signed log
            await produce(stack, second + first[10:12])
            await wait_records(conn, EVENTS, a.heads_file)
            stack.stop("audit")
            a.ids = [e[0] for e in first + second]
            a.frozen = f"{stack.settings.dsn.rsplit('/', 1)[1]}_frozen"
            await conn.close()
            await admin_sql(
                stack, f'CREATE DATABASE "{a.frozen}" TEMPLATE "{stack.settings.dsn.rsplit("/", 1)[1]}"'
            )
            a.conn = conn = await asyncpg.connect(stack.settings.dsn)
            yield a
        finally:
            print(stack.log_tail("audit"))
            await conn.close()
            if a.frozen:
                await admin_sql(stack, f'DROP DATABASE IF EXISTS "{a.frozen}" WITH (FORCE)')


async def admin_sql(stack: Stack, statement: str) -> None:
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def tampered(a: AuditStack, sql: list[str], name: str) -> dict[str, Any]:
    """A copy of the sandbox's database, changed as a superuser (triggers off), verified."""
    db = f"{a.frozen}_{name}"
    await admin_sql(a.stack, f'CREATE DATABASE "{db}" TEMPLATE "{a.frozen}"')
    dsn = a.stack.settings.dsn.rsplit("/", 1)[0] + f"/{db}"
    try:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")  # the triggers stay silent
                for statement in sql:
                    await conn.execute(statement)
        finally:
            await conn.close()
        return verify(a, KALO_DATABASE_URL=dsn)
    finally:
        await admin_sql(a.stack, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def verify(a: AuditStack, *, heads: str | None = None, **env: str) -> dict[str, Any]:
    result = kalo(
        a.env(**env),
        "audit",
        "verify",
        "--heads",
        heads or str(a.heads_file),
        "--public-key",
        str(a.public_key),
        "--json",
    )
    assert result.returncode in (0, 1), result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["ok"] == (result.returncode == 0)
    return doc


async def test_every_event_appended_once_and_the_log_verifies(audit: AuditStack) -> None:
    rows = await audit.conn.fetch("SELECT seq, event_id, record, leaf_hash FROM audit.records ORDER BY seq")
    assert [r["seq"] for r in rows] == list(range(EVENTS))
    assert sorted(r["event_id"] for r in rows) == sorted(audit.ids)
    for r in rows:  # the record is the RFC 8785 form of the event, its leaf RFC 9162's
        assert bytes(r["record"]) == canonical(orjson.loads(r["record"]))
        assert bytes(r["leaf_hash"]) == hashlib.sha256(b"\x00" + bytes(r["record"])).digest()
    doc = verify(audit)
    assert doc["ok"], doc
    assert doc["records"] == EVENTS and doc["signed_size"] == EVENTS and doc["unsigned_records"] == 0
    assert doc["heads_trusted"] >= EVENTS // 7


async def test_the_heads_topic_holds_the_same_heads(audit: AuditStack) -> None:
    doc = verify(audit, heads="topic")
    assert doc["ok"], doc
    assert doc["signed_size"] == EVENTS


async def test_one_byte_changed_is_named(audit: AuditStack) -> None:
    doc = await tampered(
        audit,
        [
            "UPDATE audit.records SET record = overlay(record placing '\\x58'::bytea from 40 for 1)"
            " WHERE seq = 17"
        ],
        "byte",
    )
    assert not doc["ok"]
    assert doc["first_bad_record"]["seq"] == 17
    assert doc["first_bad_record"]["kind"] == "altered"


async def test_a_deleted_record_is_named(audit: AuditStack) -> None:
    doc = await tampered(audit, ["DELETE FROM audit.records WHERE seq = 23"], "deleted")
    assert not doc["ok"]
    assert doc["first_bad_record"]["seq"] == 23
    assert {p["kind"] for p in doc["problems"]} >= {"missing", "deleted"}


async def test_a_deleted_record_with_the_numbering_closed_is_named(audit: AuditStack) -> None:
    doc = await tampered(
        audit,
        [
            "DELETE FROM audit.records WHERE seq = 31",
            "UPDATE audit.records SET seq = seq + 1000000 WHERE seq > 31",
            "UPDATE audit.records SET seq = seq - 1000001 WHERE seq > 1000000",
        ],
        "renumbered",
    )
    assert not doc["ok"]
    assert (doc["first_bad_record"]["seq"], doc["first_bad_record"]["kind"]) == (31, "deleted")


async def test_a_record_inserted_in_the_middle_is_named(audit: AuditStack) -> None:
    _, subject, value = events(1, start=999)[0]
    record = canonical(orjson.loads(value))
    leaf = hashlib.sha256(b"\x00" + record).digest()
    forged_id = orjson.loads(value)["id"]
    doc = await tampered(
        audit,
        [
            "UPDATE audit.records SET seq = seq + 1000000 WHERE seq >= 30",
            "UPDATE audit.records SET seq = seq - 1000000 + 1 WHERE seq >= 1000000",
            "INSERT INTO audit.records (seq, event_id, record, leaf_hash, action, subject, occurred_at)"
            " VALUES "
            f"(30, '{forged_id}', '\\x{record.hex()}', '\\x{leaf.hex()}', 'declaration.assessed', "
            f"'{subject}', now())",
        ],
        "inserted",
    )
    assert not doc["ok"]
    assert (doc["first_bad_record"]["seq"], doc["first_bad_record"]["kind"]) == (30, "inserted")
    assert doc["first_bad_record"]["event_id"] == forged_id


async def test_the_tail_cut_off_is_named(audit: AuditStack) -> None:
    doc = await tampered(audit, ["DELETE FROM audit.records WHERE seq >= 50"], "cut")
    assert not doc["ok"]
    assert (doc["first_bad_record"]["seq"], doc["first_bad_record"]["kind"]) == (50, "cut")
    assert doc["records"] == 50


async def test_a_rewrite_with_consistent_hashes_is_named(audit: AuditStack) -> None:
    """The table rewritten as a superuser would, without the signing key: record 12's amount
    changed, its leaf hash recomputed, and the store's own heads replaced by heads signed with
    another key. The published heads still sign the original leaves."""
    row = await audit.conn.fetchrow("SELECT record FROM audit.records WHERE seq = 12")
    event = orjson.loads(row["record"])
    event["data"]["details"]["total"] += 1
    record = canonical(event)
    leaf = hashlib.sha256(b"\x00" + record).digest()
    doc = await tampered(
        audit,
        [
            f"UPDATE audit.records SET record = '\\x{record.hex()}', leaf_hash = '\\x{leaf.hex()}'"
            " WHERE seq = 12",
            "DELETE FROM audit.heads",
        ],
        "rewritten",
    )
    assert not doc["ok"]
    assert (doc["first_bad_record"]["seq"], doc["first_bad_record"]["kind"]) == (12, "altered")
    assert doc["first_bad_record"]["event_id"] == event["id"]


async def test_heads_rewritten_without_the_key_are_refused(audit: AuditStack, tmp_path: Path) -> None:
    """A heads file whose leaves were replaced (the signatures kept) or re-signed with another
    key verifies no record."""
    lines = [json.loads(x) for x in audit.heads_file.read_text().splitlines()]
    altered = [dict(h) for h in lines]
    altered[2]["leaves"] = [hashlib.sha256(b"x").hexdigest(), *altered[2]["leaves"][1:]]
    path = tmp_path / "altered.jsonl"
    path.write_text("".join(json.dumps(h) + "\n" for h in altered))
    doc = verify(audit, heads=str(path))
    assert not doc["ok"]
    assert any("published leaves do not give its signed root" in p["message"] for p in doc["problems"])

    _, other_pub, _ = generate_key(tmp_path / "other.key")
    doc = json.loads(
        kalo(
            audit.env(),
            "audit",
            "verify",
            "--heads",
            str(audit.heads_file),
            "--public-key",
            str(other_pub),
            "--json",
        ).stdout
    )
    assert not doc["ok"] and doc["heads_trusted"] == 0


async def test_the_writer_role_may_only_insert(audit: AuditStack) -> None:
    writer = await asyncpg.connect(writer_dsn(audit.stack.settings))
    try:
        assert await writer.fetchval("SELECT current_user") == "kalo_audit"
        assert await writer.fetchval("SELECT count(*) FROM audit.records") == EVENTS
        for statement in (
            "UPDATE audit.records SET subject = 'x' WHERE seq = 0",
            "DELETE FROM audit.records WHERE seq = 0",
            "TRUNCATE audit.records",
            "UPDATE audit.heads SET key_id = 'x'",
            "DELETE FROM audit.heads",
            "DELETE FROM audit.positions",
            "DROP TABLE audit.records",
            "ALTER TABLE audit.records DISABLE TRIGGER records_append_only",
        ):
            with pytest.raises(asyncpg.PostgresError) as refused:
                await writer.execute(statement)
            assert isinstance(
                refused.value, asyncpg.InsufficientPrivilegeError | asyncpg.exceptions.UndefinedTableError
            ) or "owner" in str(refused.value)
    finally:
        await writer.close()
    # Even the owner is refused by the triggers (a superuser must first switch them off).
    async with audit.conn.transaction():
        for statement in (
            "UPDATE audit.records SET subject = 'x' WHERE seq = 0",
            "DELETE FROM audit.records",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                async with audit.conn.transaction():
                    await audit.conn.execute(statement)


async def test_a_proof_checks_offline_and_a_corrupted_one_does_not(audit: AuditStack, tmp_path: Path) -> None:
    event_id = audit.ids[33]
    proof_path = tmp_path / "proof.json"
    made = kalo(audit.env(), "audit", "prove", str(event_id), "--out", str(proof_path))
    assert made.returncode == 0, made.stderr + made.stdout
    proof = json.loads(proof_path.read_text())
    assert proof["tree_size"] == EVENTS and proof["event_id"] == str(event_id)
    head_path = tmp_path / "head.json"  # the auditor's copy of the latest head: the heads file's
    head_path.write_text(audit.heads_file.read_text().splitlines()[-1])
    ok = kalo(
        {},
        "audit",
        "check-proof",
        str(proof_path),
        "--head",
        str(head_path),
        "--public-key",
        str(audit.public_key),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VALID" in ok.stdout

    bad = dict(proof, inclusion_path=[proof["inclusion_path"][0][:-1] + "0", *proof["inclusion_path"][1:]])
    if bad["inclusion_path"] == proof["inclusion_path"]:
        bad["inclusion_path"][0] = proof["inclusion_path"][0][:-1] + "1"
    for corrupted in (
        bad,
        dict(proof, leaf_index=proof["leaf_index"] + 1),
        dict(proof, record=proof["record"].replace("D-audit", "D-audix")),
    ):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(corrupted))
        refused = kalo(
            {},
            "audit",
            "check-proof",
            str(path),
            "--head",
            str(head_path),
            "--public-key",
            str(audit.public_key),
        )
        assert refused.returncode == 1, refused.stdout
        assert "INVALID" in refused.stdout


async def test_export_of_a_subject_is_safe_in_a_spreadsheet(audit: AuditStack) -> None:
    result = kalo(audit.env(), "audit", "export", "--subject", '=HYPERLINK("http://x")', "--csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").split("\n")  # a U+2028 in a cell is no row
    assert lines[0].startswith("seq,event_id,")
    assert len(lines) == 2 and ',"\'=HYPERLINK(""http://x"")"' in lines[1]
    as_json = json.loads(kalo(audit.env(), "audit", "export", "--subject", "D-audit-7").stdout)
    assert [r["data"]["subject"] for r in as_json] == ["D-audit-7"]
