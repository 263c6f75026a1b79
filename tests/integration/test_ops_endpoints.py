"""Every service of a sandbox running at once, as real processes: each exports the families it
owns and no family comes from two services; /health and /ready answer on every port; /ready
names PostgreSQL when it cannot be reached; every listening socket is on 127.0.0.1 unless
KALO_BIND_HOST opens it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.control.audit.heads import generate_key
from tests.integration.conftest import ROOT, Stack, isolated_stack, wait_http
from tests.integration.helpers import auth, declaration, inps_line, register_employer, wait_status
from tests.support.sandbox import free_port

SERVICES = ("gateway", "assessment", "ledger", "liquidation", "control", "audit")
STREAM = ("consumer_lag", "dlq_messages_total", "batch_seconds")
# What each service must export (the alerts and the dashboard read these names).
EXPECTED: dict[str, set[str]] = {
    "gateway": {
        "kalo_gateway_receipts_total",
        "kalo_gateway_receipt_seconds",
        "kalo_gateway_outbox_pending",
        "kalo_gateway_outbox_published_total",
        "kalo_gateway_problems_total",
        "kalo_gateway_http_requests_total",
        "kalo_gateway_http_request_duration_seconds",
    },
    "assessment": {
        "kalo_assessment_declarations_total",
        "kalo_assessment_lines_total",
        "kalo_assessment_errors_total",
        "kalo_assessment_contributions_francs_total",
        "kalo_assessment_end_to_end_seconds",
        *(f"kalo_assessment_{s}" for s in STREAM),
    },
    "ledger": {"kalo_ledger_end_to_end_seconds", *(f"kalo_ledger_{s}" for s in STREAM)},
    "liquidation": {
        "kalo_liquidation_liquidations_total",
        "kalo_liquidation_end_to_end_seconds",
        *(f"kalo_liquidation_{s}" for s in STREAM),
    },
    "control": {
        "kalo_control_liquidations_total",
        "kalo_control_flags_total",
        "kalo_control_decisions_total",
        "kalo_control_refused_total",
        "kalo_control_escalated",
        "kalo_control_pending",
        "kalo_control_outbox_pending",
        "kalo_control_outbox_published_total",
        "kalo_control_end_to_end_seconds",
        "kalo_control_http_requests_total",
        "kalo_control_http_request_duration_seconds",
        *(f"kalo_control_{s}" for s in STREAM),
    },
    "audit": {
        "kalo_audit_records_total",
        "kalo_audit_heads_signed_total",
        "kalo_audit_tree_size",
        "kalo_audit_chain_ok",
        *(f"kalo_audit_{s}" for s in STREAM),
    },
}


def ops_ports(stack: Stack) -> dict[str, int]:
    """Where each service serves /metrics (and /health, /ready)."""
    s = stack.settings
    return {
        "gateway": s.gateway_port,
        "assessment": s.assessment_web_port,
        "ledger": s.ledger_metrics_port,
        "liquidation": s.liquidation_web_port,
        "control": s.control_metrics_port,
        "audit": s.audit_metrics_port,
    }


def http_ports(stack: Stack) -> dict[str, int]:
    """Every port with /health and /ready: the operations ports and the control's API."""
    return {
        **{f"{k} metrics": v for k, v in ops_ports(stack).items()},
        "control api": stack.settings.control_port,
    }


async def wait_ready(url: str, stack: Stack, name: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            assert stack.procs[name].poll() is None, f"{name} exited:\n{stack.log_tail(name)}"
            try:
                r = await client.get(url)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.TransportError as exc:
                last = repr(exc)
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {seconds}s: {last}\n{stack.log_tail(name)}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def everything(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A sandbox with the six services running, one declaration assessed through them all."""
    tmp = tmp_path_factory.mktemp("ops")
    async with isolated_stack(tmp) as stack:
        key, _, _ = generate_key(tmp / "audit.key")
        stack.env.update(
            KALO_AUDIT_SIGNING_KEY=str(key),
            KALO_AUDIT_HEADS_FILE=str(tmp / "heads.jsonl"),
            KALO_AUDIT_HEAD_EVERY_S="0.3",
        )
        for name in SERVICES:
            stack.start(name)
        for name, port in ops_ports(stack).items():
            await wait_ready(f"http://127.0.0.1:{port}/ready", stack, name)
        await wait_ready(f"http://127.0.0.1:{stack.settings.control_port}/ready", stack, "control")
        conn = await asyncpg.connect(stack.settings.dsn)
        try:
            employer, key_ = await register_employer(conn)
        finally:
            await conn.close()
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as c:
            r = await c.post(
                "/v1/declarations",
                json=declaration(employer, [inps_line("OPS1", 250_000)]),
                headers=auth(key_),
            )
            assert r.status_code == 202, r.text
            assert (await wait_status(c, r.json()["declaration_id"], key_))["status"] == "accepted"
        yield stack


def families(text: str) -> set[str]:
    """The kalo_* families of a scrape (a family is exported even before its first sample)."""
    out = set()
    for line in text.splitlines():
        if line.startswith("# TYPE kalo_"):
            _, _, name, kind = line.split()
            out.add(name + "_total" if kind == "counter" and not name.endswith("_total") else name)
    return out


def value(text: str, sample: str, **labels: str) -> float | None:
    """A sample of a scrape by its name and labels (in any order)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return None


async def scrape(stack: Stack) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as client:
        out = {}
        for name, port in ops_ports(stack).items():
            r = await client.get(f"http://127.0.0.1:{port}/metrics", follow_redirects=False)
            assert r.status_code == 200, (name, r.status_code, r.headers)
            out[name] = r.text
        return out


async def test_each_service_exports_its_own_families_and_no_family_comes_from_two(everything: Stack) -> None:
    scraped = {name: families(text) for name, text in (await scrape(everything)).items()}
    for name in SERVICES:
        assert EXPECTED[name] <= scraped[name], (name, sorted(EXPECTED[name] - scraped[name]))
        foreign = {f for f in scraped[name] if not f.startswith(f"kalo_{name}_")}
        assert not foreign, (name, sorted(foreign))
    owners: dict[str, list[str]] = {}
    for name, names in scraped.items():
        for family in names:
            owners.setdefault(family, []).append(name)
    assert {f: o for f, o in owners.items() if len(o) > 1} == {}


async def test_the_declared_metrics_file_is_what_the_services_export(everything: Stack) -> None:
    """deploy/prometheus/exported_metrics.yml, which the alerts and the dashboard are held to,
    names exactly the families each service exports, with their types and labels."""
    declared = yaml.safe_load((ROOT / "deploy/prometheus/exported_metrics.yml").read_text())["jobs"]
    assert set(declared) == set(SERVICES)
    for name, text in (await scrape(everything)).items():
        seen: dict[str, dict[str, object]] = {}
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("kalo_") or family.name.endswith("_created"):
                continue  # _created: the client's creation time of a counter or histogram series
            full = family.name + "_total" if family.type == "counter" else family.name
            labels = {k for s in family.samples for k in s.labels if k != "le"}
            seen[full] = {"type": family.type, "labels": labels if family.samples else None}
        assert set(seen) == set(declared[name]), (name, set(seen) ^ set(declared[name]))
        for full, got in seen.items():
            want = declared[name][full]
            assert got["type"] == want["type"], (name, full, got, want)
            if got["labels"] is not None:  # a labelled family shows its labels with its first sample
                assert got["labels"] == set(want["labels"]), (name, full, got, want)


async def test_the_declaration_moved_each_stage_and_the_audit_chain_is_whole(everything: Stack) -> None:
    deadline = time.monotonic() + 60
    while True:
        scraped = await scrape(everything)
        moved = {
            "assessed": value(scraped["assessment"], "kalo_assessment_end_to_end_seconds_count"),
            "projected": value(scraped["ledger"], "kalo_ledger_end_to_end_seconds_count"),
            "receipts": value(scraped["gateway"], "kalo_gateway_receipts_total", channel="json"),
            "audited": value(scraped["audit"], "kalo_audit_records_total"),
            "heads": value(scraped["audit"], "kalo_audit_heads_signed_total"),
        }
        if all(v is not None and v >= 1 for v in moved.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert (moved["assessed"], moved["projected"], moved["receipts"]) == (1, 1, 1), moved
    assert (moved["audited"] or 0) >= 1 and (moved["heads"] or 0) >= 1, moved
    assert value(scraped["audit"], "kalo_audit_chain_ok") == 1
    assert value(scraped["audit"], "kalo_audit_tree_size") == moved["audited"]
    # The gateway's HTTP metrics: by route template and 3-digit status.
    requests = {"method": "POST", "handler": "/v1/declarations", "status": "202"}
    assert value(scraped["gateway"], "kalo_gateway_http_requests_total", **requests) == 1
    # Lag per partition of the services' own topics only (faust's leader topic left out).
    submitted = f"{everything.settings.topic_prefix}kalo.declarations.submitted"
    deadline = time.monotonic() + 30  # the lag is observed every 5 s
    while (
        not (topics := lag_topics((await scrape(everything))["assessment"])) and time.monotonic() < deadline
    ):
        await asyncio.sleep(1)
    assert topics == {submitted}


def lag_topics(text: str) -> set[str]:
    return {
        s.labels["topic"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "kalo_assessment_consumer_lag"
    }


async def test_health_and_ready_answer_on_every_port(everything: Stack) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for name, port in http_ports(everything).items():
            health = await client.get(f"http://127.0.0.1:{port}/health")
            assert health.status_code == 200 and health.json()["status"] == "ok", (name, health.text)
            ready = await client.get(f"http://127.0.0.1:{port}/ready")
            assert ready.status_code == 200, (name, ready.text)
            assert ready.json()["status"] == "ready" and set(ready.json()["checks"].values()) == {"ok"}
        # The operations ports serve their three paths, nothing else (the ledger's used to answer
        # metrics on every path, so its /health proved nothing).
        for name in ("ledger", "control", "audit"):
            port = ops_ports(everything)[name]
            assert (await client.get(f"http://127.0.0.1:{port}/anything")).status_code == 404, name


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) of every TCP socket `pid` listens on, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: LISTEN
                    continue
                address, port = local.split(":")
                out.add((_address(address, v6), int(port, 16)))
    return out


def _address(hex_address: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_address)
    if not v6:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]  # four little-endian 32-bit words
    return ":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2))


async def test_every_listening_socket_is_on_loopback(everything: Stack) -> None:
    ports = ops_ports(everything)
    for name in SERVICES:
        sockets = listening(everything.procs[name].pid)
        assert ("127.0.0.1", ports[name]) in sockets, (name, sockets)
        if name == "control":
            assert ("127.0.0.1", everything.settings.control_port) in sockets, sockets
        assert {address for address, _ in sockets} == {"127.0.0.1"}, (name, sockets)


async def test_kalo_bind_host_opens_every_port(everything: Stack) -> None:
    port = free_port()
    proc = everything.start("gateway", "gateway-open", KALO_BIND_HOST="0.0.0.0", KALO_GATEWAY_PORT=str(port))
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        assert listening(proc.pid) == {("0.0.0.0", port)}
    finally:
        everything.stop("gateway-open")


async def test_ready_is_503_naming_postgresql_when_it_cannot_be_reached(everything: Stack) -> None:
    closed = free_port()  # nothing listens there
    away = f"postgresql://kalo@127.0.0.1:{closed}/kalo"
    gateway_port, ledger_port = free_port(), free_port()
    gateway = everything.start(
        "gateway", "gateway-nopg", KALO_DATABASE_URL=away, KALO_GATEWAY_PORT=str(gateway_port)
    )
    # A ledger that cannot reach PostgreSQL never joins its group: the running one is not disturbed.
    ledger = everything.start(
        "ledger", "ledger-nopg", KALO_DATABASE_URL=away, KALO_LEDGER_METRICS_PORT=str(ledger_port)
    )
    try:
        wait_http(f"http://127.0.0.1:{gateway_port}/health", gateway)  # alive all the same
        wait_http(f"http://127.0.0.1:{ledger_port}/health", ledger)
        async with httpx.AsyncClient(timeout=5) as client:  # never hangs: each check is bounded
            r = await client.get(f"http://127.0.0.1:{gateway_port}/ready")
            assert r.status_code == 503 and r.headers["retry-after"] == "2", r.text
            assert r.json()["not_ready"] == ["postgres"], r.text
            assert r.json()["checks"]["postgres"].startswith("down: "), r.text
            r = await client.get(f"http://127.0.0.1:{ledger_port}/ready")
            assert r.status_code == 503 and "postgres" in r.json()["not_ready"], r.text
            assert r.json()["checks"]["kafka"] == "ok", r.text
    finally:
        everything.stop("gateway-nopg")
        everything.stop("ledger-nopg")


async def test_promtool_accepts_every_live_scrape(everything: Stack, promtool: Path) -> None:
    """Each service's /metrics, as Prometheus would scrape it, passes `promtool check metrics`
    (the exposition format and its naming conventions)."""
    for name, text in (await scrape(everything)).items():
        checked = subprocess.run(
            [str(promtool), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, (name, checked.stdout + checked.stderr)
