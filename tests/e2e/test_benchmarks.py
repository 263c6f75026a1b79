"""`make bench` runs five benchmarks: each one, at a small size, on the running Kafka and
PostgreSQL, ends with status 0 and its own checks passed (the stream's grand total equal to
the SQL batch's, every liquidation equal to services/rules, the replay and the audit log
without a mismatch). The figures themselves are the benchmarks' business, not the tests'."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"loadtests.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_rules_benchmark_runs() -> None:
    out = bench("bench_rules", "--employers", "50", "--repeat", "1")
    assert re.search(r"lines/s", out), out


def test_the_gateway_benchmark_runs() -> None:
    out = bench("bench_gateway", "--seconds", "2", "--warmup", "1", "--employers", "5", "--rate", "50")
    assert "declarations/s" in out and "peak RSS" in out, out


def test_the_month_benchmark_runs_and_its_totals_agree(tmp_path: Path) -> None:
    out = bench("bench_month", "--employers", "100", "--out", str(tmp_path))
    stream = re.search(r"total assessed ([\d,]+) XOF", out)
    batch = re.search(r"SQL batch .* total ([\d,]+) XOF", out)
    assert stream and batch and stream.group(1) == batch.group(1) != "0", out
    assert (tmp_path / "bench_month.json").is_file() and (tmp_path / "bench_month.png").is_file()


def test_the_audit_benchmark_runs_without_a_mismatch() -> None:
    out = bench("bench_audit", "--employers", "100")
    assert re.search(r"mismatched 0, audit problems 0, exit 0", out), out
    assert re.search(r"kalo audit verify: .* exit 0", out), out


def test_the_claims_benchmark_runs_and_every_liquidation_agrees() -> None:
    out = bench("bench_claims", "--claims", "50")
    assert "liquidations read 50, differing from services/rules: 0" in out, out
