"""Benchmark: the auditors' tools on a national month.

    python -m loadtests.bench_audit                    # the national month (~58,000 declarations)
    python -m loadtests.bench_audit --employers 3000   # a sample

In a sandbox on the running stack it registers the month's employers, starts the real
`kalo run assessment` and `kalo run audit` processes, produces every declaration and waits
until the audit log holds every decision under a signed head. Then, as an auditor would,
it runs (each as its own process, timed, with its peak RSS):

- `kalo replay --from … --to … --verify --json`: every assessment re-derived with its stored
  ruleset, every audit record's hashes checked and found in the signed log (target
  ≥ 50,000 lines/s, 0 mismatches);
- `kalo audit verify`: the month's records recomputed against every published head
  (target ≤ 5 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer

from loadtests.bench_month import (
    SUBMITTED_AT,
    Services,
    month_messages,
    produce,
    register_employers,
    wait_until,
)
from services.control.audit.heads import generate_key
from services.demo.sample_month import NATIONAL_EMPLOYERS, generate_month
from tests.support.sandbox import sandbox

ROOT = Path(__file__).resolve().parents[1]


def timed(env: dict[str, str], *args: str) -> tuple[float, float, int, str]:
    """Run `kalo ARGS` as a process: wall seconds, peak RSS (MiB), exit code, stdout."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    t = time.monotonic()
    where = os.environ.get("KALO_BENCH_PROFILE")  # a cProfile of each command into DIR
    profile = ["-m", "cProfile", "-o", f"{where}/{args[0]}.prof"] if where else []
    proc = subprocess.Popen(
        [sys.executable, *profile, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    out.seek(0)
    text = out.read().decode()
    out.close()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"kalo {' '.join(args)} exited {proc.returncode}:\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, proc.returncode, text


async def bench(
    employers: int, assessment_workers: int, partitions: int, keep: bool = False
) -> dict[str, Any]:
    docs = list(generate_month("2026-10", SUBMITTED_AT, employers=employers))
    lines = sum(len(d["lines"]) for d in docs)
    messages = month_messages(docs)
    print(f"month: {len(docs):,} declarations, {lines:,} lines", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="kalo-bench-audit-"))
    (tmp / "logs").mkdir()
    key, public, _ = generate_key(tmp / "audit.key")
    heads = tmp / "heads.jsonl"
    async with sandbox(tmp / "data", partitions=partitions, keep=keep) as sb:
        sb.env.update(KALO_AUDIT_SIGNING_KEY=str(key), KALO_AUDIT_HEADS_FILE=str(heads))
        conn = await asyncpg.connect(sb.settings.dsn)
        try:
            await register_employers(conn, docs)
            services = Services(sb, tmp / "logs", assessment_workers, ledger_workers=0)
            services.start("audit", "audit")
            try:
                start = datetime.now(UTC) - timedelta(seconds=1)
                t0 = time.monotonic()
                await produce(sb, messages)
                await wait_until(conn, "SELECT count(*) FROM audit.records", len(docs), services, 900)
                await wait_until(
                    conn, "SELECT coalesce(max(tree_size), 0) FROM audit.heads", len(docs), services, 120
                )
                print(f"assessed and logged in {time.monotonic() - t0:.1f} s", flush=True)
                end = datetime.now(UTC) + timedelta(seconds=1)
                if keep:
                    kept = {k: v for k, v in sb.env.items() if k.startswith("KALO_")}
                    print(
                        f"kept: {json.dumps(kept)} --from {start.isoformat()} --to {end.isoformat()}",
                        flush=True,
                    )
                await asyncio.sleep(1.5)
                rss_services = services.peak_rss()
            finally:
                services.stop()
            r_s, r_rss, r_code, r_out = timed(
                sb.env, "replay", "--from", start.isoformat(), "--to", end.isoformat(), "--verify", "--json"
            )
            replay = json.loads(r_out)
            v_s, v_rss, v_code, v_out = timed(
                sb.env, "audit", "verify", "--heads", str(heads), "--public-key", str(public), "--json"
            )
            verified = json.loads(v_out)
        finally:
            await conn.close()
    return {
        "declarations": len(docs),
        "lines": lines,
        "replay": {
            "seconds": round(r_s, 2),
            "engine_seconds": replay["seconds"],
            "lines_per_s": round(lines / r_s),
            "exit": r_code,
            "rederived": replay["rederived"],
            "equal": replay["equal"],
            "mismatched": replay["mismatched"],
            "audit_problems": len(replay["audit_problems"]),
            "peak_rss_mib": round(r_rss),
            "stages": replay["stages"],
        },
        "verify": {
            "seconds": round(v_s, 2),
            "exit": v_code,
            "records": verified["records"],
            "heads": verified["heads_trusted"],
            "peak_rss_mib": round(v_rss),
        },
        "services_peak_rss_mib": {k: round(v) for k, v in rss_services.items()},
    }


def main(
    employers: Annotated[int, typer.Option(help="employers in the month")] = NATIONAL_EMPLOYERS,
    assessment_workers: Annotated[int, typer.Option()] = 2,
    partitions: Annotated[int, typer.Option()] = 6,
    keep: Annotated[
        bool, typer.Option(help="keep the sandbox (database and topics) and print its settings")
    ] = False,
) -> None:
    r = asyncio.run(bench(employers, assessment_workers, partitions, keep))
    rp, vf = r["replay"], r["verify"]
    print(f"month: {r['declarations']:,} declarations, {r['lines']:,} lines")
    print(
        f"kalo replay --verify: {rp['seconds']} s ({rp['engine_seconds']} s in the engine), "
        f"{rp['lines_per_s']:,} lines/s "
        f"(target >= 50,000: {'yes' if rp['lines_per_s'] >= 50_000 else 'NO'}); "
        f"re-derived {rp['rederived']:,}, equal {rp['equal']:,}, mismatched {rp['mismatched']}, "
        f"audit problems {rp['audit_problems']}, exit {rp['exit']}; peak RSS {rp['peak_rss_mib']} MiB"
    )
    print(
        f"kalo audit verify: {vf['seconds']} s for {vf['records']:,} records and {vf['heads']} heads "
        f"(target <= 5 s: {'yes' if vf['seconds'] <= 5 else 'NO'}), exit {vf['exit']}; "
        f"peak RSS {vf['peak_rss_mib']} MiB"
    )
    print(f"replay stages (s): {rp['stages']}")
    print(f"services' peak RSS: {r['services_peak_rss_mib']}")
    print(json.dumps(r))


if __name__ == "__main__":
    typer.run(main)
