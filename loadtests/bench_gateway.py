"""Gateway benchmark: 50 employers submit 20-line declarations concurrently.

Creates a sandbox (fresh database and topic prefix on the running stack), starts the
gateway as a real process (`kalo run gateway`), registers the employers, and gives each
employer one keep-alive HTTP/1.1 connection that submits declarations (each to the next
month: one original per employer and period), in two bounded phases after a warm-up:
- closed loop: every client sends its next declaration as soon as it has its receipt
  (the most the gateway takes; latency then is concurrency / throughput);
- open loop: `--rate` declarations/s offered in total, latency counted from the
  scheduled send time (a slow answer is not hidden by the next request leaving late).
Prints per phase the sustained receipts/s, receipt latency percentiles, the gateway's
CPU and PostgreSQL time per receipt, how soon the relay drained the outbox after the last
receipt; then the peak RSS of the gateway and of this driver.

    python -m loadtests.bench_gateway [--seconds 20] [--employers 50] [--lines 20] [--rate 500]

The client is a minimal asyncio HTTP/1.1 writer/reader over prebuilt request bytes, so
the driver costs little CPU next to the gateway on a 2-core machine. Numbers measured
on a machine shared with other work are pessimistic.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import asyncpg
import httpx
import orjson
import typer

from services.gateway.registry import add_employer
from tests.support.sandbox import sandbox

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    first: float = 0.0
    last: float = 0.0


def declaration_body(employer_id: str, period: str, lines: int, seq: int) -> bytes:
    return orjson.dumps(
        {
            "employer": {"id": employer_id, "regime": "INPS", "risk_class": 2, "filing": "monthly"},
            "period": period,
            "lines": [
                {
                    "worker_id": f"{employer_id}-W{w}",
                    "category": "salarie",
                    "days_worked": 30,
                    "base_salary": 100_000 + 1_000 * w + seq,
                    "bonuses": 5_000,
                    "benefits_in_kind": 0,
                    "expense_reimbursements": 2_000,
                }
                for w in range(lines)
            ],
        }
    )


def period_of(n: int) -> str:
    return f"{1990 + n // 12}-{n % 12 + 1:02d}"


def request_bytes(port: int, key: str, body: bytes) -> bytes:
    head = (
        f"POST /v1/declarations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def client(
    port: int,
    employer_id: str,
    key: str,
    lines: int,
    until: float,
    results: Results,
    *,
    first_month: int = 0,
    interval: float | None = None,
) -> int:
    """Submit back to back (closed loop) or one every `interval` seconds (open loop: the
    latency counts from the scheduled time, so a slow answer is not hidden by sending the
    next one late). Returns the next unused month."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = first_month
    try:
        scheduled = time.perf_counter() + (interval or 0) * random.random()
        while scheduled < until:
            request = request_bytes(port, key, declaration_body(employer_id, period_of(n), lines, n))
            if interval is not None:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            started = scheduled if interval is not None else time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            done = time.perf_counter()
            results.statuses[status] = results.statuses.get(status, 0) + 1
            if status == 202:
                results.latencies.append(done - started)
                results.last = max(results.last, done)
            n += 1
            scheduled = scheduled + interval if interval is not None else done
    finally:
        writer.close()
        await writer.wait_closed()
    return n


def process_tree(pid: int) -> list[int]:
    """The process and its children (uvicorn's workers when KALO_GATEWAY_WORKERS > 1)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def peak_rss_mb(pid: int) -> list[float]:
    """VmHWM (peak resident set size) of the process and of each of its children."""
    peaks = []
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU time the process (and its children) have used."""
    total = 0.0
    for p in process_tree(pid) if children else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Phase:
    name: str
    results: Results
    elapsed: float
    cpu: float
    drained: float
    db_seconds: float  # the gateway's time in gateway_submit (its histogram), summed
    db_p99: str  # the histogram bucket of its 99th percentile
    pg_cpu: float  # CPU seconds of the gateway's PostgreSQL backends

    def report(self, lines: int) -> None:
        r, ok = self.results, len(self.results.latencies)
        lat = r.latencies or [float("nan")]
        print(f"  {self.name}")
        print(f"    receipts (202):       {ok:,}   statuses: {dict(sorted(r.statuses.items()))}")
        print(
            f"    sustained:            {ok / self.elapsed:,.0f} declarations/s "
            f"({ok * lines / self.elapsed:,.0f} lines/s)"
        )
        print(
            f"    receipt latency:      p50 {percentile(lat, 0.50) * 1000:.1f} ms   "
            f"p90 {percentile(lat, 0.90) * 1000:.1f} ms   p99 {percentile(lat, 0.99) * 1000:.1f} ms   "
            f"max {max(lat) * 1000:.1f} ms"
        )
        print(
            f"    gateway CPU:          {self.cpu / self.elapsed * 100:.0f} % of one core, "
            f"{self.cpu / max(ok, 1) * 1000:.2f} ms per receipt (relay included)"
        )
        if os.environ.get("KALO_GATEWAY_WORKERS", "1") == "1":  # /metrics is per worker process
            print(
                f"    of which PostgreSQL:  {self.db_seconds / max(ok, 1) * 1000:.1f} ms per receipt, "
                f"p99 {self.db_p99} (pool wait + gateway_submit + commit)"
            )
        print(
            f"    PostgreSQL CPU:       {self.pg_cpu / self.elapsed * 100:.0f} % of one core, "
            f"{self.pg_cpu / max(ok, 1) * 1000:.2f} ms per receipt (the gateway's backends)"
        )
        print(f"    outbox drained:       {self.drained:.2f} s after the last receipt")


async def run_phase(
    name: str,
    conn: asyncpg.Connection,
    pid: int,
    port: int,
    keys: dict[str, str],
    months: dict[str, int],
    lines: int,
    seconds: float,
    rate: float | None,
) -> Phase:
    results = Results()
    db_before = await receipt_db_histogram(port)
    backends = [
        r["pid"]
        for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    ]
    pg_cpu_before = sum(cpu_seconds(b, children=False) for b in backends)
    cpu_before = cpu_seconds(pid)
    results.first = time.perf_counter()
    until = results.first + seconds
    interval = len(keys) / rate if rate else None
    next_months = await asyncio.gather(
        *(
            client(port, e, k, lines, until, results, first_month=months[e], interval=interval)
            for e, k in keys.items()
        )
    )
    months.update(zip(keys, next_months, strict=True))
    elapsed = (results.last or time.perf_counter()) - results.first
    cpu = cpu_seconds(pid) - cpu_before
    pg_cpu = sum(cpu_seconds(b, children=False) for b in backends) - pg_cpu_before
    drained = await wait_drained(conn, results.last)
    db_after = await receipt_db_histogram(port)
    db_seconds = db_after.get("sum", 0.0) - db_before.get("sum", 0.0)
    db_p99 = bucket_quantile(db_before, db_after, 0.99)
    return Phase(name, results, elapsed, cpu, drained, db_seconds, db_p99, pg_cpu)


async def receipt_db_histogram(port: int) -> dict[str, float]:
    """kalo_gateway_receipt_seconds from the gateway's /metrics: cumulative bucket counts
    by upper bound, and the sum under "sum"."""
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("kalo_gateway_receipt_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("kalo_gateway_receipt_seconds_sum"):
            out["sum"] = out.get("sum", 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def bucket_quantile(before: dict[str, float], after: dict[str, float], q: float) -> str:
    """The histogram bucket holding the q-quantile of what happened between two scrapes."""
    bounds = sorted((b for b in after if b not in ("sum", "+Inf")), key=float)
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    for b in bounds:
        if after[b] - before.get(b, 0.0) >= q * total:
            return f"<= {float(b) * 1000:g} ms"
    return f"> {float(bounds[-1]) * 1000:g} ms" if bounds else "n/a"


async def bench(seconds: float, employers: int, lines: int, warmup: float, rate: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with sandbox(
            Path(tmp) / "data",
            KALO_GATEWAY_RATE_PER_SECOND="100000",
            KALO_GATEWAY_RATE_BURST="100000",
        ) as sb:
            conn = await asyncpg.connect(sb.settings.dsn)
            keys = {}
            for employer_id in [f"B{i:04d}" for i in range(employers)]:
                keys[employer_id] = await add_employer(
                    conn, employer_id=employer_id, regime="INPS", risk_class=2, filing="monthly"
                )
            months = dict.fromkeys(keys, 0)  # each employer's next month (one original each)
            log = open(Path(tmp) / "gateway.log", "wb")  # noqa: SIM115 - owned by the process
            gateway = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", "gateway"],
                cwd=ROOT,
                env=sb.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            port = sb.settings.gateway_port
            try:
                await wait_healthy(port, gateway)
                await run_phase("warm-up", conn, gateway.pid, port, keys, months, lines, warmup, None)
                phases = [
                    await run_phase(
                        f"closed loop: {employers} clients back to back (the most it takes)",
                        conn,
                        gateway.pid,
                        port,
                        keys,
                        months,
                        lines,
                        seconds,
                        None,
                    ),
                    await run_phase(
                        f"open loop: {rate:g} declarations/s offered (latency from the scheduled send)",
                        conn,
                        gateway.pid,
                        port,
                        keys,
                        months,
                        lines,
                        seconds,
                        rate,
                    ),
                ]
                rss = peak_rss_mb(gateway.pid)
                published = await conn.fetchval(
                    "SELECT count(*) FROM gateway.outbox WHERE published_at IS NOT NULL"
                )
                received = await conn.fetchval("SELECT count(*) FROM gateway.declarations")
            finally:
                gateway.terminate()
                gateway.wait(timeout=30)
                log.close()
                await conn.close()
    print(f"gateway benchmark: {employers} employers, {lines}-line declarations, {seconds:g} s per phase")
    for phase in phases:
        phase.report(lines)
    print(f"  receipts written {received:,}, outbox messages published {published:,}")
    per_process = " + ".join(f"{mb:.0f}" for mb in rss)
    driver = driver_peak_rss_mb()
    print(f"  peak RSS: gateway {per_process} MB ({len(rss)} process(es)), driver {driver:.0f} MB")
    print("  target: 500 declarations/s with p99 < 100 ms (2 shared cores: numbers are pessimistic)")


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the gateway exited while starting")
            try:
                if (await c.get(f"http://127.0.0.1:{port}/health", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("the gateway did not start")


async def wait_drained(conn: asyncpg.Connection, last: float, seconds: float = 120) -> float:
    deadline = time.monotonic() + seconds
    while await conn.fetchval("SELECT count(*) FROM gateway.outbox WHERE published_at IS NULL"):
        if time.monotonic() > deadline:
            return float("inf")
        await asyncio.sleep(0.05)
    return time.perf_counter() - last


def driver_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(
    seconds: Annotated[float, typer.Option(help="measured duration")] = 20.0,
    employers: Annotated[int, typer.Option(help="concurrent employers (one connection each)")] = 50,
    lines: Annotated[int, typer.Option(help="lines per declaration")] = 20,
    warmup: Annotated[float, typer.Option(help="warm-up seconds before measuring")] = 3.0,
    rate: Annotated[float, typer.Option(help="declarations/s offered in the open-loop phase")] = 500.0,
) -> None:
    asyncio.run(bench(seconds, employers, lines, warmup, rate))


if __name__ == "__main__":
    typer.run(main)
