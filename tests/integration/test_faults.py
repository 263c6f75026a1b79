"""Outages answer, and services come back: faults under load on a Kafka and a PostgreSQL of
this module's own (started by deploy/local/kafka.sh and pg.sh on free ports, in a temporary
state folder; the shared stack of `make up` is never touched).

While declarations flow through the gateway, Kafka and PostgreSQL are restarted and the
ledger and the assessment SIGKILLed. Then every 202 has exactly one decision, no account
or career is doubled, the clients saw only 202 or 503 with Retry-After, and every service
runs again, started by its supervisor (deploy/local/supervise.sh), not by the test.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from services.common import kafka
from services.common.settings import Settings
from services.gateway.registry import add_employer
from tests.integration.conftest import ROOT, Stack, wait_http
from tests.integration.helpers import auth, read_all
from tests.integration.test_assessment_ledger import expected_rows, ledger_rows
from tests.support.sandbox import free_port, sandbox
from tests.unit.test_ledger_batches import LINE, assessed_envelope

LOCAL = ROOT / "deploy" / "local"
SERVICES = ("gateway", "assessment", "ledger")


@dataclass
class Pair:
    """A Kafka and a PostgreSQL of the test's own, driven by the project's scripts."""

    env: dict[str, str]
    settings: Settings
    log: list[str] = field(default_factory=list)

    def script(self, name: str, command: str) -> None:
        started = time.monotonic()
        out = subprocess.run(
            ["bash", str(LOCAL / f"{name}.sh"), command],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=150,
        )
        self.log.append(f"{name}.sh {command}: {time.monotonic() - started:.1f} s")
        if out.returncode:
            raise RuntimeError(f"{name}.sh {command} failed ({out.returncode}):\n{out.stdout}{out.stderr}")

    async def run(self, name: str, command: str) -> None:
        await asyncio.to_thread(self.script, name, command)


def kafka_home() -> str:
    home = os.environ.get("KALO_KAFKA_HOME") or str(LOCAL / ".kafka")
    if not (Path(home) / "libs" / ".complete").exists():
        pytest.fail(f"no Kafka jars in {home}: `make up` fetches them (or set KALO_KAFKA_HOME)")
    return home


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Pair, Stack]]:
    home = kafka_home()
    # PostgreSQL runs as `postgres` when the tests run as root: its folder must be reachable.
    state = Path(tempfile.mkdtemp(prefix="kalo-faults-", dir="/var/tmp"))
    state.chmod(0o755)
    kafka_port, controller_port, pg_port = free_port(), free_port(), free_port()
    ports = {
        "KALO_KAFKA_PORT": str(kafka_port),
        "KALO_KAFKA_CONTROLLER_PORT": str(controller_port),
        "KALO_PG_PORT": str(pg_port),
    }
    env = {
        **os.environ,
        **ports,
        "KALO_STATE_DIR": str(state),
        "KALO_KAFKA_HOME": home,
        "KALO_PYTHON": sys.executable,
    }
    pair = Pair(env, Settings(kafka_port=kafka_port, pg_port=pg_port))
    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "logs").mkdir()
    try:
        await asyncio.gather(pair.run("kafka", "start"), pair.run("pg", "start"))
        async with sandbox(
            tmp / "data",
            base=pair.settings,
            KALO_GATEWAY_RATE_PER_SECOND="1000",
            KALO_GATEWAY_RATE_BURST="2000",
            KALO_KAFKA_SESSION_TIMEOUT_S="6",
            KALO_RESTART_MAX_DELAY_S="2",
            **ports,
        ) as sb:
            stack = Stack(sb.settings, sb.env, pair.settings.dsn, tmp / "logs")
            try:
                for name in SERVICES:
                    stack.start(name, supervised=True)
                wait_http(f"{stack.gateway_url}/health", stack.procs["gateway"])
                yield pair, stack
            finally:
                for name in list(stack.procs):
                    stack.stop(name)
                await pair.run("pg", "start")  # the sandbox drops its database
    finally:
        for name in ("kafka", "pg"):
            try:
                await pair.run(name, "stop")
            except Exception as exc:  # teardown goes on
                print(exc)
        shutil.rmtree(state, ignore_errors=True)


async def register(stack: Stack, count: int, tag: str) -> list[tuple[dict[str, Any], str]]:
    conn = await asyncpg.connect(stack.settings.dsn)
    try:
        employers = []
        for i in range(count):
            regime = "CMSS" if i % 5 == 0 else "INPS"
            employer = {
                "id": f"F{tag}{i:03d}",
                "regime": regime,
                "risk_class": None if regime == "CMSS" else 1 + i % 4,
                "filing": "monthly",
            }
            key = await add_employer(
                conn,
                employer_id=employer["id"],
                regime=regime,
                risk_class=employer["risk_class"],
                filing="monthly",
            )
            employers.append((employer, key))
        return employers
    finally:
        await conn.close()


def body(employer: dict[str, Any], period: str, rng: random.Random) -> dict[str, Any]:
    lines = []
    for w in range(rng.randint(1, 5)):
        category = "salarie" if employer["regime"] == "INPS" else rng.choice(["fonctionnaire", "militaire"])
        lines.append(
            {
                "worker_id": f"W{employer['id']}-{w}",
                "category": category,
                "days_worked": rng.choice([30, 30, 15]),
                "base_salary": rng.choice([40_000, 123_457, 250_000, 1_200_000]),
                "bonuses": rng.choice([0, 10_000]),
                "benefits_in_kind": 0,
                "expense_reimbursements": 0,
            }
        )
    return {"employer": employer, "period": period, "lines": lines}


@dataclass
class Client:
    """Submits like a well-behaved client: the same request again (same Idempotency-Key)
    after a 503, once Retry-After has passed, or after a connection error."""

    seen: Counter[str] = field(default_factory=Counter)
    others: list[str] = field(default_factory=list)
    receipts: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> declaration id

    async def submit(self, client: httpx.AsyncClient, doc: dict[str, Any], key: str, idem: str) -> None:
        headers = {**auth(key), "Idempotency-Key": idem}
        for _ in range(200):
            try:
                r = await client.post("/v1/declarations", json=doc, headers=headers)
            except httpx.TransportError as exc:
                self.seen["connection error"] += 1
                self.others.append(repr(exc))
                await asyncio.sleep(0.5)
                continue
            if r.status_code == 202:
                self.seen["202"] += 1
                self.receipts[idem] = r.json()["declaration_id"]
                return
            retry_after = r.headers.get("retry-after", "")
            problem = r.headers.get("content-type", "").startswith("application/problem+json")
            if r.status_code == 503 and retry_after.isdigit() and problem:
                self.seen["503"] += 1
                await asyncio.sleep(int(retry_after))
                continue
            self.seen["other"] += 1
            self.others.append(f"{r.status_code} {r.headers.get('retry-after')} {r.text[:300]}")
            return
        raise AssertionError(f"{idem} never received")


async def produce_assessed(stack: Stack, ids: list[str]) -> None:
    """Assessed events straight onto the ledger's topic (Kafka up, PostgreSQL away): the
    ledger fetches them and must wait for PostgreSQL to write them."""
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:
        name = kafka.topic("kalo.declarations.assessed", stack.settings)
        for i, did in enumerate(ids):
            event = assessed_envelope(did, f"FDIRECT{i % 3}", f"2025-{i // 3 + 1:02d}", i, [LINE])
            await producer.send(name, event.model_dump_json().encode(), key=f"FDIRECT{i % 3}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def ready(client: httpx.AsyncClient) -> httpx.Response | None:
    try:
        return await client.get("/ready")
    except httpx.TransportError:
        return None


async def wait_healthy(client: httpx.AsyncClient, seconds: float) -> float:
    started = time.monotonic()
    while (r := await ready(client)) is None or r.status_code != 200:
        assert time.monotonic() - started < seconds, f"gateway not ready after {seconds}s: {r and r.text}"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_postgres_away_gives_503_with_retry_after_and_ready_says_so(
    outage_stack: tuple[Pair, Stack],
) -> None:
    pair, stack = outage_stack
    (employer, key), *_ = await register(stack, 1, "h")
    rng = random.Random(1)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=15) as client:
        first = await client.post("/v1/declarations", json=body(employer, "2025-01", rng), headers=auth(key))
        assert first.status_code == 202, first.text
        await pair.run("pg", "stop")
        try:
            r = await client.post("/v1/declarations", json=body(employer, "2025-02", rng), headers=auth(key))
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 503 and r.json()["title"] == "Service unavailable"
            read = await client.get(f"/v1/declarations/{first.json()['declaration_id']}", headers=auth(key))
            assert read.status_code == 503 and "retry-after" in read.headers
            h = await client.get("/ready")
            assert h.status_code == 503 and int(h.headers["retry-after"]) >= 1
            assert h.json()["status"] == "not ready" and h.json()["not_ready"] == ["postgres"], h.text
            assert (await client.get("/health")).status_code == 200  # alive all the same
        finally:
            await pair.run("pg", "start")
        recovered = await wait_healthy(client, 30)
        again = await client.post("/v1/declarations", json=body(employer, "2025-02", rng), headers=auth(key))
        assert again.status_code == 202, again.text
        assert (await client.get("/ready")).json()["status"] == "ready"
    print(f"\ngateway healthy {recovered:.1f} s after PostgreSQL was started again")
    for name in SERVICES:  # nobody exited because PostgreSQL went away
        assert stack.restarts(name) == 0, stack.log_tail(name)


async def test_faults_under_load_every_receipt_decided_once(outage_stack: tuple[Pair, Stack]) -> None:
    pair, stack = outage_stack
    employers = await register(stack, 40, "l")
    rng = random.Random(5)
    work = []  # (body, key, Idempotency-Key), in submission order
    for month in range(10):
        for employer, key in employers:
            work.append((body(employer, f"2024-{month + 1:02d}", rng), key, str(uuid.uuid4())))
    first_pids = {name: stack.child_pid(name) for name in SERVICES}
    restarts_before = {name: stack.restarts(name) for name in SERVICES}
    client = Client()
    direct = [f"D-direct-{i:02d}" for i in range(12)]
    load_s = 55.0
    started = time.monotonic()
    faults: list[str] = []

    async def load() -> None:
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        for i, item in enumerate(work):
            queue.put_nowait((i, item))

        async def worker(http: httpx.AsyncClient) -> None:
            while not queue.empty():
                i, (doc, key, idem) = queue.get_nowait()
                # Paced over `load_s`, so that every fault lands while declarations flow.
                await asyncio.sleep(max(0.0, started + i * load_s / len(work) - time.monotonic()))
                await client.submit(http, doc, key, idem)

        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http:
            await asyncio.gather(*(worker(http) for _ in range(8)))

    def note(what: str) -> None:
        faults.append(f"{time.monotonic() - started:5.1f} s  {what}")

    async def inflict() -> None:
        await asyncio.sleep(6)
        pid = stack.child_pid("assessment")
        assert pid
        os.kill(pid, signal.SIGKILL)
        note(f"assessment SIGKILLed (pid {pid})")
        await asyncio.sleep(5)
        note("Kafka stopping")
        await pair.run("kafka", "stop")
        await asyncio.sleep(3)
        await pair.run("kafka", "start")
        note("Kafka started again")
        await asyncio.sleep(5)
        note("PostgreSQL stopping")
        await pair.run("pg", "stop")
        await asyncio.sleep(2)
        await produce_assessed(stack, direct)
        note(f"{len(direct)} assessed events produced for the ledger while PostgreSQL is away")
        await asyncio.sleep(8)  # the 10 s restart
        await pair.run("pg", "start")
        note("PostgreSQL started again")
        await asyncio.sleep(4)
        pid = stack.child_pid("ledger")
        assert pid
        os.kill(pid, signal.SIGKILL)
        note(f"ledger SIGKILLed (pid {pid})")

    await asyncio.gather(load(), inflict())
    note(f"load done: {dict(client.seen)}")

    # Every receipt decided exactly once, within a bound.
    ids = set(client.receipts.values())
    conn = await asyncpg.connect(stack.settings.dsn)
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = await conn.fetch(
                "SELECT declaration_id, status, received_at FROM gateway.declarations"
                " WHERE declaration_id = ANY($1)",
                list(ids),
            )
            decided = {r["declaration_id"] for r in rows if r["status"] in ("accepted", "rejected")}
            if decided == ids or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        note(f"{len(decided)} of {len(ids)} receipts decided")
        while (
            len(
                applied := await conn.fetch(
                    "SELECT declaration_id FROM ledger.declaration_outcomes"
                    " WHERE declaration_id = ANY($1) AND event_id IS NOT NULL",
                    direct,
                )
            )
            < len(direct)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.5)
        note(f"{len(applied)} of {len(direct)} events produced during the outage applied")
        print("\n" + "\n".join([*faults, *pair.log]))
        print(
            f"submitted {len(work)}, 202: {client.seen['202']}, 503: {client.seen['503']}, "
            f"other: {client.seen['other']}, connection errors: {client.seen['connection error']}"
        )
        print("restarts:", {name: stack.restarts(name) - restarts_before[name] for name in SERVICES})
        assert client.seen["other"] == 0 and client.seen["connection error"] == 0, client.others[:10]
        assert len(client.receipts) == len(work) and len(ids) == len(work)
        assert decided == ids, {n: stack.log_tail(n, 15) for n in SERVICES}
        assert len(applied) == len(direct), stack.log_tail("ledger")

        # One decision event per declaration on the output topics (a copy only under the same id).
        events: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for name in ("kalo.declarations.assessed", "kalo.declarations.rejected"):
            for e in await read_all(stack.settings, name, seconds=2):
                if e["data"]["declaration_id"] in ids:
                    events[e["data"]["declaration_id"]].add((e["type"], e["id"]))
        assert set(events) == ids
        assert {d: ev for d, ev in events.items() if len(ev) != 1} == {}

        # Nothing doubled: the ledger's rows are what the rules compute from the inputs.
        received = {r["declaration_id"]: r["received_at"] for r in rows}
        docs = []
        for doc, _key, idem in work:
            did = client.receipts[idem]
            at = received[did].isoformat().replace("+00:00", "Z")
            docs.append({**doc, "declaration_id": did, "submitted_at": at})
        want = expected_rows(docs)
        mine = {employer["id"] for employer, _ in employers}
        got = await ledger_rows(conn)
        got["declarations"] = {d: v for d, v in got["declarations"].items() if d in ids}
        got["careers"] = {c for c in got["careers"] if c[2] in mine}
        got["dues"] = {k: v for k, v in got["dues"].items() if k[0] in mine}
        got["periods"] = {k: v for k, v in got["periods"].items() if k[0] in mine}
        assert got == want
    finally:
        await conn.close()

    # Every service runs again, started by its supervisor: the killed ones exactly once more.
    for name in SERVICES:
        assert stack.procs[name].poll() is None, f"{name}'s supervisor ended"
        assert stack.child_pid(name) is not None, stack.log_tail(name)
    assert stack.child_pid("ledger") != first_pids["ledger"]
    assert stack.child_pid("assessment") != first_pids["assessment"]
    restarts = {name: stack.restarts(name) - restarts_before[name] for name in SERVICES}
    assert restarts == {"gateway": 0, "assessment": 1, "ledger": 1}, restarts
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as http:
        assert (await http.get("/health")).status_code == 200


async def test_pension_services_and_the_audit_store_wait_out_ten_seconds_without_postgres_or_kafka(
    outage_stack: tuple[Pair, Stack], tmp_path: Path
) -> None:
    """The liquidation, the control commission and the audit store, each under its supervisor:
    PostgreSQL away for ten seconds, then Kafka away for ten seconds. Nobody hangs: each is
    ready again once they are back, and the PostgreSQL outage restarts none of them."""
    from services.control.audit.heads import generate_key

    pair, stack = outage_stack
    key, _, _ = generate_key(tmp_path / "audit.key")
    s = stack.settings
    urls = {
        "liquidation": f"http://127.0.0.1:{s.liquidation_web_port}/ready",
        "control": f"http://127.0.0.1:{s.control_port}/ready",
        "audit": f"http://127.0.0.1:{s.audit_metrics_port}/ready",
    }
    stack.start("liquidation", supervised=True)
    stack.start("control", supervised=True)
    stack.start("audit", supervised=True, KALO_AUDIT_SIGNING_KEY=str(key))

    async def all_ready(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=3) as client:
            for name, url in urls.items():
                while True:
                    try:
                        if (await client.get(url)).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, f"{name} not ready\n{stack.log_tail(name)}"
                    await asyncio.sleep(0.3)

    try:
        await all_ready(90)
        await pair.run("pg", "stop")
        await asyncio.sleep(10)
        await pair.run("pg", "start")
        await all_ready(60)
        assert {n: stack.restarts(n) for n in urls} == dict.fromkeys(urls, 0), stack.log_tail("control")
        await pair.run("kafka", "stop")
        await asyncio.sleep(10)
        await pair.run("kafka", "start")
        await all_ready(90)
    finally:
        for name in urls:
            stack.stop(name)


async def test_sigterm_ends_every_service_within_10_s_with_postgres_away(
    outage_stack: tuple[Pair, Stack],
) -> None:
    pair, stack = outage_stack
    await pair.run("pg", "stop")
    took = {}
    try:
        await asyncio.sleep(2)  # the services notice
        for name in SERVICES:
            proc = stack.procs.pop(name)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # to the supervisor, which passes it on
            await asyncio.to_thread(proc.wait, 30)
            took[name] = time.monotonic() - started
    finally:
        await pair.run("pg", "start")
    print("\nSIGTERM to exit, PostgreSQL away:", {k: f"{v:.1f} s" for k, v in took.items()})
    for name in SERVICES:
        last = [line for line in stack.log_tail(name, 200).splitlines() if "[supervise]" in line][-1]
        # Ended by itself (uvicorn re-raises the SIGTERM it handled: status 143), not SIGKILLed.
        assert "stopped (" in last and "SIGKILL" not in last, (name, last)
        assert took[name] <= 10.5, (name, took[name])
