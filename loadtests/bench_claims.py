"""Benchmark: pension claims over 35-year careers, liquidated by the real liquidation process.

    python -m loadtests.bench_claims                  # 20,000 claims, 420 months each (~8.5 M career rows)
    python -m loadtests.bench_claims --claims 2000    # smaller

In a sandbox on the running stack (fresh database and topic prefix) it loads the careers with
COPY (the older 408 months of each worker imported from before Kalo, some of them from two
employers, the last 12 assessed by Kalo), starts the real `kalo run liquidation`, `kalo run
control` and `kalo run ledger` processes, produces every claim to `kalo.pensions.claims` and
waits until the ledger holds every liquidation and the control commission has stored (and, on
arrival, decided) every one. It prints claims/s liquidated and controlled, p50/p99 from the
claim's produce to its decision and to its liquidation on `kalo.pensions.liquidations`, the
peak RSS and CPU of each process, and checks every liquidation against services/rules computed
directly (reading the topic back once the timing is over, so as not to take CPU from it).
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import orjson
import typer

from contracts.envelope import derived_id, wrap
from contracts.pensions import PensionClaimFiled
from loadtests.bench_month import Services, percentile, postgres_cpu, wait_until
from services.common import kafka
from services.rules import liquidate_claim, load_ruleset
from services.rules.control import control_review
from services.rules.dates import add_months, period_text
from tests.support.sandbox import Sandbox, free_port, sandbox

LAST = date(2026, 10, 1)  # the last month of every career
EFFECTIVE = date(2026, 12, 1)
ASSESSED = 12  # the career's last months, assessed by Kalo


# Records of a topic a tracked consumer has applied (its next offsets, summed over partitions).
_APPLIED = """
SELECT coalesce(sum(next_offset), 0) FROM {schema}.consumer_offsets WHERE consumer = $1 AND topic = $2
"""


def career(worker: int, months: int) -> list[tuple[str, str, int]]:
    """Worker `worker`'s career, oldest first: (period, employer, base); deterministic."""
    start = add_months(LAST, 1 - months)
    level = 60_000 + (worker * 7_919) % 500_000
    rows = []
    for k in range(months):
        period = period_text(add_months(start, k))
        rows.append((period, f"E{worker % 97}", level + k * 150))
        if k % 60 == 30 and k < months - ASSESSED:
            rows.append((period, "E-SECOND", 25_000))  # a second employer that month
    return rows


def claim(worker: int) -> dict[str, Any]:
    cmss = worker % 10 == 0
    age = 55 + worker % 10
    return {
        "claim_id": f"C-BENCH-{worker:06d}",
        "worker_id": f"WB{worker:06d}",
        "regime": "CMSS" if cmss else "INPS",
        "category": "fonctionnaire" if cmss else "salarie",
        "grade": "C" if cmss else None,
        "birth_date": date(EFFECTIVE.year - age, 1 + worker % 11, 1).isoformat(),
        "effective_date": EFFECTIVE.isoformat(),
    }


async def _text(claims: int, months: int, imported: bool) -> AsyncIterator[bytes]:
    """COPY text of the careers: imported rows or assessed rows."""
    at = "2026-11-01 00:00:00+00"
    chunk: list[str] = []
    for w in range(claims):
        worker = f"WB{w:06d}"
        rows = career(w, months)
        cut = len(rows) - ASSESSED
        for period, employer, base in rows[:cut] if imported else rows[cut:]:
            if imported:
                chunk.append(f"{worker}\t{period}\t{employer}\t{base}\tI-BENCH\t{at}\n")
            else:
                chunk.append(f"{worker}\t{period}\t{employer}\tD-BENCH-{period}\t{base}\n")
        if len(chunk) >= 50_000:
            yield "".join(chunk).encode()
            chunk = []
            await asyncio.sleep(0)
    if chunk:
        yield "".join(chunk).encode()


async def load_careers(conn: asyncpg.Connection, claims: int, months: int) -> int:
    await conn.copy_to_table(
        "career_imports",
        schema_name="ledger",
        source=_text(claims, months, True),
        columns=["worker_id", "period", "employer_id", "base", "import_id", "imported_at"],
    )
    await conn.copy_to_table(
        "careers",
        schema_name="ledger",
        source=_text(claims, months, False),
        columns=["worker_id", "period", "employer_id", "declaration_id", "base"],
    )
    await conn.execute("ANALYZE ledger.careers; ANALYZE ledger.career_imports")
    rows = await conn.fetchval(
        "SELECT (SELECT count(*) FROM ledger.careers) + (SELECT count(*) FROM ledger.career_imports)"
    )
    return int(rows)


def messages(claims: int) -> list[tuple[bytes, bytes]]:
    out = []
    for w in range(claims):
        c = claim(w)
        data = PensionClaimFiled(**c, filed_by="bench", filed_at=datetime.now(UTC))
        event = wrap(
            data, producer="bench", correlation_id=c["claim_id"], event_id=derived_id(c["claim_id"], "bench")
        )
        out.append((c["worker_id"].encode(), event.model_dump_json().encode()))
    return out


async def produce(sb: Sandbox, batch: list[tuple[bytes, bytes]], rate: float) -> dict[str, float]:
    """Send every claim (at `rate` per second when given); the wall-clock time of each."""
    producer = kafka.producer(sb.settings, linger_ms=5)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        name = kafka.topic("kalo.pensions.claims", sb.settings)
        started = time.monotonic()
        for n, (key, value) in enumerate(batch):
            if rate:
                ahead = started + n / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            sent[orjson.loads(value)["correlation_id"]] = time.time()
            await producer.send(name, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def read_liquidations(
    sb: Sandbox, count: int, seconds: float
) -> dict[str, tuple[float, float, dict[str, Any]]]:
    """Every liquidation on the topic: claim id → (time read, its record's timestamp, its data)."""
    consumer = kafka.consumer(
        kafka.topic("kalo.pensions.liquidations", sb.settings), group_id=None, settings=sb.settings
    )
    await consumer.start()
    out: dict[str, tuple[float, float, dict[str, Any]]] = {}
    try:
        deadline = time.monotonic() + seconds
        while len(out) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                for r in records:
                    event = orjson.loads(r.value)
                    data = event["data"]
                    out.setdefault(data["claim_id"], (now, r.timestamp / 1000, data))
    finally:
        await consumer.stop()
    return out


async def bench(
    claims: int, months: int, partitions: int, batch: int, rate: float, keep_logs: bool, controls: int = 1
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kalo-bench-claims-"))
    (tmp / "logs").mkdir()
    report: dict[str, Any] = {"claims": claims, "months": months, "controls": controls}
    async with sandbox(tmp / "data", partitions=partitions, KALO_LIQUIDATION_BATCH=str(batch)) as sb:
        conn = await asyncpg.connect(sb.settings.dsn)
        try:
            t = time.monotonic()
            report["career_rows"] = await load_careers(conn, claims, months)
            report["load_s"] = time.monotonic() - t
            print(
                f"careers: {report['career_rows']:,} rows loaded with COPY in {report['load_s']:.1f} s",
                flush=True,
            )
            services = Services(sb, tmp / "logs", 0)
            services.start("liquidation", "liquidation")
            for i in range(controls):  # each controls the liquidations of its partitions on arrival
                name = "control" if i == 0 else f"control-{i}"
                ports = (
                    {}
                    if i == 0
                    else {
                        "KALO_CONTROL_PORT": str(free_port()),
                        "KALO_CONTROL_METRICS_PORT": str(free_port()),
                    }
                )
                services.start("control", name, **ports)
            try:
                warm = messages(1)
                await produce(sb, warm, 0)
                await wait_until(conn, "SELECT count(*) FROM ledger.claim_liquidations", 1, services, 120)
                await wait_until(conn, "SELECT count(*) FROM control.liquidations", 1, services, 120)
                batch_messages = messages(claims)[1:]
                cpu_before = services.cpu()
                pg_before = await postgres_cpu(conn)
                t0 = time.monotonic()
                sent = await produce(sb, batch_messages, rate)
                report["produce_s"] = time.monotonic() - t0
                report["timed"] = len(sent)
                # Polled on the consumers' tracking records (a few rows), not by counting the
                # tables' rows ten times a second while they are written; counted once after.
                liquidations = kafka.topic("kalo.pensions.liquidations", sb.settings)
                t_ledger = await wait_until(
                    conn, _APPLIED.format(schema="ledger"), claims, services, 600, "kalo-ledger", liquidations
                )
                t_control = await wait_until(
                    conn,
                    _APPLIED.format(schema="control"),
                    claims,
                    services,
                    600,
                    "kalo-control",
                    liquidations,
                )
                stored = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM ledger.claim_liquidations)"
                    " + (SELECT count(*) FROM control.liquidations)"
                )
                if stored != 2 * claims:
                    raise RuntimeError(f"{stored} rows in the ledger and the control, not {2 * claims}")
                controlled = await conn.fetch(
                    "SELECT claim_id, status, extract(epoch FROM coalesce(decided_at, received_at)) AS at"
                    " FROM control.liquidations"
                )
                report["rss_mib"] = {
                    **services.peak_rss(),
                    "bench": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                }
                cpu = {k: v - cpu_before[k] for k, v in services.cpu().items()}
                pg_after = await postgres_cpu(conn)
                cpu["postgres"] = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
                report["cpu_s"] = cpu
            finally:
                services.stop()
            # Read back once everything is controlled, so that the reader's decoding of
            # 20,000 careers does not take CPU from the services it measures.
            got = await read_liquidations(sb, claims, 600)
            report["ledger_s"] = t_ledger - t0
            report["control_s"] = t_control - t0
            report["control_status"] = dict(Counter(r["status"] for r in controlled))
            # From the claim's produce to the control's decision (approved or rejected on
            # arrival; a flagged one: to its arrival, where it waits for controllers).
            decided = {r["claim_id"]: float(r["at"]) for r in controlled}
            to_decision = [decided[c] - s for c, s in sent.items() if c in decided]
            report["decision_p50_s"] = percentile(to_decision, 0.5)
            report["decision_p99_s"] = percentile(to_decision, 0.99)
            # To the liquidation's record on the topic (its record timestamp): the service's own latency.
            to_topic = [got[c][1] - s for c, s in sent.items() if c in got]
            report["topic_p50_s"] = percentile(to_topic, 0.5)
            report["topic_p99_s"] = percentile(to_topic, 0.99)
            report["last_on_topic_s"] = max(got[c][1] for c in sent if c in got) - min(sent.values())
            report["liquidated"] = len(got)
            ruleset = load_ruleset()
            wrong, decisions = 0, {}
            # The reference run, timed in this process while nothing else runs: the law alone
            # (RULES.md §3 liquidation and §4 control's re-computation and flags) on the same
            # claims and careers, one core, no Kafka or PostgreSQL.
            rules_s = 0.0
            for w in range(claims):
                c = claim(w)
                doc = {**c, "career": [{"period": p, "base": b} for p, _, b in career(w, months)]}
                data = got.get(c["claim_id"], (0.0, 0.0, {}))[2]
                started = time.perf_counter()
                want = liquidate_claim(doc, ruleset)
                if data:
                    control_review(
                        data["claim"], data["career"], data["liquidation"], ruleset, already_approved=False
                    )
                rules_s += time.perf_counter() - started
                wrong += data.get("liquidation") != want
                decisions[want["decision"]] = decisions.get(want["decision"], 0) + 1
            report["rules_s"] = rules_s
            report["wrong"] = wrong
            report["decisions"] = decisions
        finally:
            await conn.close()
    if not keep_logs:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs in {tmp / 'logs'}")
    return report


def main(
    claims: Annotated[int, typer.Option(help="claims (one worker each)")] = 20_000,
    months: Annotated[int, typer.Option(help="months of each career (35 years: 420)")] = 420,
    partitions: Annotated[int, typer.Option(help="partitions per topic")] = 6,
    batch: Annotated[int, typer.Option(help="KALO_LIQUIDATION_BATCH")] = 500,
    rate: Annotated[float, typer.Option(help="claims/s offered (0: as fast as produced)")] = 0.0,
    controls: Annotated[int, typer.Option(help="control processes (one consumer group)")] = 1,
    keep_logs: Annotated[bool, typer.Option(help="keep the workers' logs")] = False,
) -> None:
    """Liquidate the claims on the real stack and print the report."""
    r = asyncio.run(bench(claims, months, partitions, batch, rate, keep_logs, controls))
    n = r["timed"]  # the warm-up claim left out
    print(f"\n{r['claims']:,} claims over {r['months']}-month careers ({r['career_rows']:,} career rows)")
    print(f"  produced in {r['produce_s']:.1f} s" + (f" (offered at {rate:,.0f}/s)" if rate else ""))
    print(f"  in the ledger: {r['ledger_s']:.1f} s, {n / r['ledger_s']:,.0f} claims/s")
    print(
        f"  controlled (the control commission's decision on arrival): {r['control_s']:.1f} s, "
        f"{n / r['control_s']:,.0f} claims/s; {r['control_status']}; claim produced -> decision "
        f"p50 {r['decision_p50_s']:.2f} s, p99 {r['decision_p99_s']:.2f} s"
    )
    print(
        f"  last liquidation on the topic {r['last_on_topic_s']:.1f} s after the first claim was produced: "
        f"{n / r['last_on_topic_s']:,.0f} claims/s"
    )
    print(
        f"  latency claim produced -> liquidation on the topic: p50 {r['topic_p50_s']:.2f} s, "
        f"p99 {r['topic_p99_s']:.2f} s"
    )
    for name, mib in r["rss_mib"].items():
        print(f"  peak RSS {name}: {mib:,.0f} MiB")
    for name, cpu in r["cpu_s"].items():
        print(f"  CPU time {name}: {cpu:.1f} s")
    print(
        f"  decisions: {r['decisions']}; liquidations read {r['liquidated']:,}, "
        f"differing from services/rules: {r['wrong']}"
    )
    print(
        f"  reference, the rules alone (liquidation and the control's re-computation, one process): "
        f"{r['rules_s']:.1f} s, {r['claims'] / r['rules_s']:,.0f} claims/s; "
        f"end to end / rules alone = {r['control_s'] / r['rules_s']:.2f}x"
    )
    print(
        "target 1,000 claims/s (liquidated and controlled): "
        + ("met" if n / r["control_s"] >= 1000 else "missed")
    )
    # Every claim liquidated, the warm-up's included (the rate above leaves it out).
    if r["wrong"] or r["liquidated"] != r["claims"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
