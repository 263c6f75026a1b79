"""Benchmark: a national month through Kafka, the assessment worker and the ledger.

    python -m loadtests.bench_month                 # the national month (~58,000 declarations)
    python -m loadtests.bench_month --employers 3000  # a sample

In a sandbox on the running stack (fresh database and topic prefix) it registers the
month's employers, starts the real `kalo run assessment` and `kalo run ledger` processes,
produces every declaration to `kalo.declarations.submitted` and waits until the ledger
holds every assessment, every career line and every pre-registered worker. It prints lines/s
end to end, p50/p99 latency from produce to ledger commit, the peak RSS of each process,
and, on the same month, two reference points with their ratios:

- pass-through: a plain aiokafka consume→produce of the same messages (the transport's limit);
- SQL batch: `COPY` the lines into PostgreSQL and compute every item with one
  `INSERT … SELECT` (what a user would write instead), whose grand total must equal the
  stream's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from loadtests import month_report
from loadtests.month_report import Sampler
from services.common import kafka
from services.demo.sample_month import NATIONAL_EMPLOYERS, generate_month
from services.rules import line_spec, load_ruleset, parse_period
from tests.support.sandbox import Sandbox, sandbox
from tests.support.submitted import submitted_event

ROOT = Path(__file__).resolve().parents[1]
SUBMITTED_AT = "2026-11-10T09:00:00Z"


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the peak resident set of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (robust to a shared machine, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def month_messages(docs: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """The month's declarations as the gateway's relay sends them: (key, submitted event)."""
    return [
        (
            d["employer"]["id"].encode(),
            submitted_event(
                declaration_id=d["declaration_id"],
                employer=d["employer"],
                period=d["period"],
                lines=d["lines"],
                submitted_at=_at(SUBMITTED_AT),
                payload_sha256="0" * 64,
            )
            .model_dump_json()
            .encode(),
        )
        for d in docs
    ]


class Services:
    """The real worker processes of the sandbox."""

    def __init__(self, sb: Sandbox, logs: Path, assessment_workers: int, ledger_workers: int = 1) -> None:
        self.sb = sb
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.spies: list[subprocess.Popen[bytes]] = []
        self.metrics_ports: dict[str, int] = {}
        self.ledger_ports: dict[str, int] = {}
        from tests.support.sandbox import free_port

        for i in range(ledger_workers):
            name = "ledger" if ledger_workers == 1 else f"ledger-{i}"
            port = sb.settings.ledger_metrics_port if i == 0 else free_port()
            self.ledger_ports[name] = port
            self.start("ledger", name, KALO_LEDGER_METRICS_PORT=str(port))
        for i in range(assessment_workers):
            port = free_port()
            self.metrics_ports[f"assessment-{i}"] = port
            self.start("assessment", f"assessment-{i}", KALO_ASSESSMENT_WEB_PORT=str(port))

    def start(self, service: str, name: str, **env: str) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, *self.profiler(name), "-m", "services.cli", "run", service],
                cwd=ROOT,
                env={**self.sb.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.spy(name, self.procs[name].pid)

    def profiler(self, name: str) -> list[str]:
        """KALO_BENCH_PROFILE=DIR: profile each worker into DIR/NAME.prof (cProfile)."""
        where = os.environ.get("KALO_BENCH_PROFILE")
        return ["-m", "cProfile", "-o", f"{where}/{name}.prof"] if where else []

    def spy(self, name: str, pid: int) -> None:
        """KALO_BENCH_PYSPY=DIR: sample each worker with py-spy into DIR/NAME.txt (collapsed
        stacks, written when the worker ends); unlike cProfile it does not slow the worker."""
        where = os.environ.get("KALO_BENCH_PYSPY")
        if where:
            out = f"{where}/{name}.txt"
            spy = str(Path(sys.executable).with_name("py-spy"))
            cmd = [spy, "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", out, "-p", str(pid)]
            self.spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def peak_rss(self) -> dict[str, float]:
        return {name: peak_rss_mib(p.pid) for name, p in self.procs.items()}

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for spy in self.spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()


async def postgres_cpu(conn: asyncpg.Connection) -> dict[int, float]:
    """CPU time of each PostgreSQL backend serving the sandbox's database (same machine)."""
    pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    out = {}
    for row in pids:
        with contextlib.suppress(OSError):  # ended meanwhile, or another machine
            out[row["pid"]] = cpu_seconds(row["pid"])
    return out


async def register_employers(conn: asyncpg.Connection, docs: list[dict[str, Any]]) -> None:
    employers = {d["employer"]["id"]: d["employer"] for d in docs}
    await conn.copy_records_to_table(
        "employers",
        schema_name="gateway",
        records=[(e["id"], e["regime"], e["risk_class"], e["filing"]) for e in employers.values()],
        columns=["id", "regime", "risk_class", "filing"],
    )


async def wait_until(
    conn: asyncpg.Connection, query: str, want: int, services: Services, seconds: float, *args: Any
) -> float:
    deadline = time.monotonic() + seconds
    while True:
        n = await conn.fetchval(query, *args)
        if n >= want:
            return time.monotonic()
        services.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} of {want} after {seconds}s: {query}")
        await asyncio.sleep(0.1)


_LEDGER_OFFSETS = """
SELECT coalesce(sum(next_offset), 0) FROM ledger.consumer_offsets
WHERE consumer = 'kalo-ledger' AND topic = ANY($1::text[])
"""


async def produce(sb: Sandbox, messages: list[tuple[bytes, bytes]]) -> list[float]:
    """Send every message; returns the wall-clock time each send was issued. Record batches
    per partition (the key's partition, as `producer.send` would choose), 2,000 messages at
    a time: the producer's own CPU, on the same 2 cores, competes less with the workers it
    measures (one `producer.send` per message cost 4 s of the month)."""
    producer = kafka.producer(sb.settings, linger_ms=20, max_batch_size=1_048_576)
    await producer.start()
    sent_at = []
    try:
        name = kafka.topic("kalo.declarations.submitted", sb.settings)
        sender = kafka.BatchSender(producer)
        for n, (key, value) in enumerate(messages, 1):
            sent_at.append(time.time())
            await sender.send(name, key, value)
            if n % 2000 == 0:
                await sender.flush()
        await sender.flush()
    finally:
        await producer.stop()
    return sent_at


async def pass_through(sb: Sandbox, count: int) -> float:
    """Plain aiokafka: consume the submitted topic, produce every message to another topic."""
    out = f"{sb.settings.topic_prefix}bench.passthrough"
    admin = AIOKafkaAdminClient(bootstrap_servers=sb.settings.bootstrap)
    await admin.start()
    try:
        configs = {"max.message.bytes": str(sb.settings.max_message_bytes)}
        await admin.create_topics([NewTopic(out, sb.settings.partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    source = kafka.topic("kalo.declarations.submitted", sb.settings)
    consumer = kafka.consumer(
        source, group_id=f"{sb.settings.topic_prefix}bench-passthrough", settings=sb.settings
    )
    producer = kafka.producer(sb.settings, linger_ms=20, max_batch_size=1_048_576)
    await consumer.start()
    await producer.start()
    try:
        started = time.monotonic()
        seen = 0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for r in records:
                    await producer.send(out, r.value, key=r.key)
                    seen += 1
        await producer.flush()
        await consumer.commit()
        return time.monotonic() - started
    finally:
        await producer.stop()
        await consumer.stop()


_SQL_BATCH = """
INSERT INTO bench_items (declaration_id, line_no, branch, fund, payer, amount)
SELECT l.declaration_id, l.line_no, s.branch, s.fund, s.payer,
       round(CASE s.base
                 WHEN 'base' THEN greatest(l.base_salary + l.bonuses + l.in_kind,
                                           round(s.smig * least(l.days, 30) / 30.0))
                 WHEN 'gross' THEN l.base_salary + l.bonuses + l.in_kind
                 ELSE l.base_salary
             END * s.rate)::bigint
FROM bench_lines l
JOIN bench_specs s ON s.regime = l.regime AND s.category = l.category
                  AND s.risk_class IS NOT DISTINCT FROM l.risk_class
WHERE l.days > 0
"""


async def sql_batch(conn: asyncpg.Connection, docs: list[dict[str, Any]]) -> tuple[float, int]:
    """The batch a user would write: COPY the lines, one INSERT … SELECT for every item."""
    ruleset = load_ruleset()
    specs = set()
    for d in docs:
        for line in d["lines"]:
            specs.add((d["period"], d["employer"]["regime"], line["category"], d["employer"]["risk_class"]))
    spec_rows = []
    for period, regime, category, risk in specs:
        spec = line_spec(ruleset, parse_period(period), regime, category, risk)
        for item in spec.items:
            spec_rows.append(
                (
                    regime,
                    category,
                    risk,
                    item.branch,
                    item.fund,
                    item.payer,
                    item.rate.value,
                    item.base,
                    spec.smig,
                )
            )
    await conn.execute(
        """CREATE TABLE bench_specs (regime text, category text, risk_class int, branch text, fund text,
                                     payer text, rate numeric, base text, smig int);
           CREATE TABLE bench_lines (declaration_id text, line_no int, regime text, risk_class int,
                                     period text, worker_id text, category text, days int,
                                     base_salary bigint, bonuses bigint, in_kind bigint, expenses bigint);
           CREATE TABLE bench_items (declaration_id text, line_no int, branch text, fund text,
                                     payer text, amount bigint);"""
    )
    await conn.copy_records_to_table("bench_specs", records=spec_rows)
    rows = [
        (
            d["declaration_id"],
            n,
            d["employer"]["regime"],
            d["employer"]["risk_class"],
            d["period"],
            line["worker_id"],
            line["category"],
            line["days_worked"],
            line["base_salary"],
            line["bonuses"],
            line["benefits_in_kind"],
            line["expense_reimbursements"],
        )
        for d in docs
        for n, line in enumerate(d["lines"], 1)
    ]
    started = time.monotonic()
    async with conn.transaction():
        await conn.copy_records_to_table("bench_lines", records=rows)
        await conn.execute(_SQL_BATCH)
    elapsed = time.monotonic() - started
    total = await conn.fetchval("SELECT sum(amount) FROM bench_items")
    return elapsed, int(total)


async def bench(
    employers: int, assessment_workers: int, partitions: int, keep_logs: bool, ledger_workers: int = 1
) -> dict[str, Any]:
    t = time.monotonic()
    docs = list(generate_month("2026-10", SUBMITTED_AT, employers=employers))
    lines = sum(len(d["lines"]) for d in docs)
    workers = len({line["worker_id"] for d in docs for line in d["lines"]})
    messages = month_messages(docs)
    megabytes = sum(len(v) for _, v in messages) / 1e6
    largest = max(len(d["lines"]) for d in docs)
    print(
        f"month: {len(docs):,} declarations, {lines:,} lines (largest {largest:,}), "
        f"{megabytes:.0f} MB on the wire; generated in {time.monotonic() - t:.1f} s",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="kalo-bench-"))
    (tmp / "logs").mkdir()
    report: dict[str, Any] = {
        "declarations": len(docs),
        "lines": lines,
        "assessment_workers": assessment_workers,
        "ledger_workers": ledger_workers,
        "partitions": partitions,
        "megabytes_on_the_wire": megabytes,
    }
    async with sandbox(tmp / "data", partitions=partitions) as sb:
        conn = await asyncpg.connect(sb.settings.dsn)
        try:
            await register_employers(conn, docs)
            services = Services(sb, tmp / "logs", assessment_workers, ledger_workers)
            try:
                await _warm_up(sb, conn, services)
                cpu_before = services.cpu()
                pg_before = await postgres_cpu(conn)
                load_before = os.getloadavg()[0]
                sampler = Sampler(
                    sb.settings.dsn,
                    sb.settings.bootstrap,
                    services.metrics_ports,
                    _groups(sb),
                    "2026-10",
                )
                t0 = time.monotonic()
                sampler.start(t0)
                sent_at = await produce(sb, messages)
                produced = time.monotonic() - t0
                print(f"produced in {produced:.1f} s", flush=True)
                applied = (
                    "SELECT count(*) FROM ledger.declaration_outcomes WHERE event_id IS NOT NULL"
                    " AND period = '2026-10'"
                )
                # Polled every 0.1 s: the ledger's tracking records (a few rows), then the
                # outcomes counted once. Counting the outcomes every 0.1 s, as this bench did,
                # was a third of PostgreSQL's time during the month (pg_stat_statements).
                outputs = [
                    kafka.topic(t, sb.settings)
                    for t in ("kalo.declarations.assessed", "kalo.declarations.rejected")
                ]
                await wait_until(conn, _LEDGER_OFFSETS, len(docs) + 1, services, 900, outputs)
                t_ledger = await wait_until(conn, applied, len(docs), services, 900)
                t_workers = await wait_until(
                    conn,
                    "SELECT count(*) FROM ledger.workers WHERE first_period = '2026-10'",
                    workers,
                    services,
                    300,
                )
                elapsed = max(t_ledger, t_workers) - t0
                samples = await sampler.stop()
                load_after = os.getloadavg()[0]
                rss = services.peak_rss()
                cpu = {k: v - cpu_before[k] for k, v in services.cpu().items()}
                pg_after = await postgres_cpu(conn)
                cpu["postgres"] = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
                scraped = await _scrape(services)
            finally:
                services.stop()
            rows = await conn.fetch(
                "SELECT declaration_id, extract(epoch FROM assessed_at) AS at,"
                " (totals->>'total')::bigint AS total FROM ledger.declaration_outcomes"
                " WHERE period = '2026-10'"
            )
            sent = {d["declaration_id"]: s for d, s in zip(docs, sent_at, strict=True)}
            latencies = [float(r["at"]) - sent[r["declaration_id"]] for r in rows]
            stream_total = sum(r["total"] or 0 for r in rows)
            careers = await conn.fetchval("SELECT count(*) FROM ledger.careers WHERE period = '2026-10'")

            passthrough = await pass_through(sb, len(docs) + 1)
            batch_s, batch_total = await sql_batch(conn, docs)
        finally:
            await conn.close()
    if not keep_logs:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    report.update(
        {
            "seconds": elapsed,
            "load": (load_before, load_after),
            "lines_per_s": lines / elapsed,
            "declarations_per_s": len(docs) / elapsed,
            "latency_p50_s": percentile(latencies, 0.5),
            "latency_p99_s": percentile(latencies, 0.99),
            "peak_rss_mib": {**rss, "bench": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
            "cpu_s": cpu,
            "careers": careers,
            "stream_total": stream_total,
            "passthrough_s": passthrough,
            "sql_batch_s": batch_s,
            "sql_batch_total": batch_total,
            "metrics": scraped,
            "samples": samples,
        }
    )
    return report


def _groups(sb: Sandbox) -> dict[str, list[str]]:
    """The consumer groups whose lag is charted, with their topics."""
    from services.ledger.app import TOPICS

    prefix = sb.settings.topic_prefix
    return {
        f"{prefix}kalo-assessment": [kafka.topic("kalo.declarations.submitted", sb.settings)],
        f"{prefix}kalo-ledger": [kafka.topic(t, sb.settings) for t in TOPICS],
    }


def _at(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _warm_up(sb: Sandbox, conn: asyncpg.Connection, services: Services) -> None:
    """One small declaration through the whole path: the workers are up and own their partitions."""
    await conn.execute(
        "INSERT INTO gateway.employers (id, regime, risk_class, filing)"
        " VALUES ('BENCH-WARMUP', 'INPS', 1, 'monthly')"
    )
    event = submitted_event(
        declaration_id="D-warm-up",
        employer={"id": "BENCH-WARMUP", "regime": "INPS", "risk_class": 1, "filing": "monthly"},
        period="2026-09",
        lines=[{"worker_id": "W-warm-up", "category": "salarie", "days_worked": 30, "base_salary": 100_000}],
        submitted_at=_at(SUBMITTED_AT),
        payload_sha256="0" * 64,
    )
    await produce(sb, [(b"BENCH-WARMUP", event.model_dump_json().encode())])
    await wait_until(
        conn, "SELECT count(*) FROM ledger.declaration_outcomes WHERE event_id IS NOT NULL", 1, services, 120
    )


async def _scrape(services: Services) -> dict[str, float]:
    """A few counters from the workers' /metrics, as a cross-check of what they did."""
    out: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        ports = [*services.metrics_ports.values(), *services.ledger_ports.values()]
        for port in ports:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for line in text.splitlines():
                if line.startswith(
                    (
                        "kalo_assessment_declarations_total{",
                        "kalo_assessment_lines_total{",
                        "kalo_assessment_batch_seconds_",
                        "kalo_ledger_batch_seconds_",
                    )
                ) and not any(x in line for x in ("bucket", "_created")):
                    name = line.split(" ")[0]
                    out[name] = out.get(name, 0.0) + float(line.split()[-1])
    return out


def main(
    employers: Annotated[
        int, typer.Option(help="employers (declarations) in the month")
    ] = NATIONAL_EMPLOYERS,
    scale: Annotated[
        float, typer.Option(help="the national month times this (10: Morocco's size); overrides --employers")
    ] = 0.0,
    assessment_workers: Annotated[int, typer.Option(help="assessment processes in one group")] = 1,
    ledger_workers: Annotated[int, typer.Option(help="ledger processes in one group")] = 1,
    partitions: Annotated[int, typer.Option(help="partitions per topic")] = 6,
    keep_logs: Annotated[bool, typer.Option(help="keep the workers' logs")] = False,
    out: Annotated[Path, typer.Option(help="where the JSON report and the PNG chart go")] = ROOT
    / "loadtests"
    / "out",
) -> None:
    """Run the month through the real stack and print the report."""
    if scale:
        employers = round(NATIONAL_EMPLOYERS * scale)
    r = asyncio.run(bench(employers, assessment_workers, partitions, keep_logs, ledger_workers))
    lines, secs = r["lines"], r["seconds"]
    print(f"\nend to end: {r['declarations']:,} declarations, {lines:,} lines in {secs:.1f} s")
    print(f"  {r['lines_per_s']:,.0f} lines/s, {r['declarations_per_s']:,.0f} declarations/s")
    print(
        f"  latency produce -> ledger commit: p50 {r['latency_p50_s']:.2f} s, p99 {r['latency_p99_s']:.2f} s"
    )
    for name, mib in r["peak_rss_mib"].items():
        print(f"  peak RSS {name}: {mib:,.0f} MiB")
    for name, cpu in r["cpu_s"].items():
        print(f"  CPU time {name}: {cpu:.1f} s")  # postgres: the backends of the sandbox database
    workers_rss = {k: v for k, v in r["peak_rss_mib"].items() if k != "bench"}
    print(f"  peak RSS of every worker < 1 GiB: {'yes' if max(workers_rss.values()) < 1024 else 'NO'}")
    print(f"  careers rows {r['careers']:,}; total assessed {r['stream_total']:,} XOF")
    print(f"  worker counters: {r['metrics']}")
    print(
        f"pass-through (aiokafka consume->produce): {r['passthrough_s']:.1f} s; "
        f"stream / pass-through = {secs / r['passthrough_s']:.1f}x"
    )
    print(
        f"SQL batch (COPY + one INSERT ... SELECT): {r['sql_batch_s']:.1f} s, "
        f"total {r['sql_batch_total']:,} XOF; "
        f"stream / batch = {secs / r['sql_batch_s']:.1f}x"
    )
    print(f"target 30 s: {'met' if secs <= 30 else 'missed'}")
    print(
        f"(the machine is shared: numbers are pessimistic; load average {r['load'][0]:.2f} "
        f"before, {r['load'][1]:.2f} after, on {os.cpu_count()} cores)"
    )
    stem = "bench_month" if not scale or scale == 1 else f"bench_month_x{scale:g}"
    if assessment_workers > 1 or ledger_workers > 1:
        stem += f"_{assessment_workers}a{ledger_workers}l{partitions}p"
    json_path, png_path = month_report.write(r, out, stem)
    print(f"report: {json_path}\nchart: {png_path}")
    if r["sql_batch_total"] != r["stream_total"]:
        print("MISMATCH: the stream's total differs from the SQL batch's", file=sys.stderr)
        raise typer.Exit(1)
    os.environ.pop("KALO_TOPIC_PREFIX", None)


if __name__ == "__main__":
    typer.run(main)
