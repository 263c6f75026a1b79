"""Benchmark of the rules engine: `kalo rules assess --jsonl` on a national month.

    python -m loadtests.bench_rules                 # 57,750 declarations, 400,000 lines
    python -m loadtests.bench_rules --employers 3000 --repeat 3

1. Writes the month with the shipped generator `services/demo/sample_month.py` (once;
   kept in loadtests/out/).
2. Runs the real command, `kalo rules assess --jsonl MONTH > OUT`, as one process: wall and
   CPU time, lines/s, peak RSS. The command's start-up (imports of the `kalo` CLI) is
   measured apart, with an empty input, and shown beside the rate without it.
3. Runs the same code path in this process (`services.cli.rules`'s stream loop, JSON decoding
   and encoding included) and times each declaration: latency p50 / p99 / max.

The machine may be shared: treat the figures as a lower bound of what it can do.
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer

from services.cli.rules import _process
from services.rules import assess_declaration, load_ruleset

OUT_DIR = Path("loadtests/out")
TARGET_LINES_PER_S = 100_000


def _month(employers: int | None, period: str) -> tuple[Path, int, int]:
    """The month file (generated when missing), its declarations and lines."""
    name = "month.jsonl" if employers is None else f"month-{employers}.jsonl"
    path = OUT_DIR / name
    if not path.exists():
        command = [sys.executable, "-m", "services.demo.sample_month", "--period", period, "--out", str(path)]
        if employers is not None:
            command += ["--employers", str(employers)]
        subprocess.run(command, check=True)
    declarations = lines = 0
    with path.open("rb") as stream:
        for raw in stream:
            declarations += 1
            lines += len(orjson.loads(raw)["lines"])
    return path, declarations, lines


def _kalo() -> list[str]:
    script = Path(sys.executable).parent / "kalo"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from services.cli import main; main()"]


def _run(command: list[str], stdin: Path | None, stdout: Path) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak RSS (bytes) and exit code of one child process."""
    with stdout.open("wb") as out, stdin.open("rb") if stdin else open(os.devnull, "rb") as inp:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdin=inp, stdout=out)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, child.returncode


def _rate(lines: int, seconds: float) -> str:
    # A start-up measured apart can exceed a short run on a busy machine.
    return f"{lines / seconds:,.0f} lines/s" if seconds > 0.05 else "n/a (the start-up dominates)"


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _in_process(path: Path, repeat: int) -> tuple[float, float, list[float], int]:
    """The CLI's stream loop on the month (output discarded): best wall and CPU seconds of
    `repeat` runs; then per-declaration latencies."""
    ruleset = load_ruleset()
    walls, cpus = [], []
    for _ in range(repeat):
        with path.open("rb") as stream, open(os.devnull, "wb") as sink:
            start, start_cpu = time.perf_counter(), time.process_time()
            _process(stream, sink, True, ruleset, assess_declaration)  # what --jsonl runs
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - start_cpu)
    gc.freeze()  # as _process does, for the timed loop below
    latencies: list[float] = []
    largest = 0
    loads, dumps, clock = orjson.loads, orjson.dumps, time.perf_counter
    with path.open("rb") as stream:
        for raw in stream:
            t0 = clock()
            dumps(assess_declaration(loads(raw), ruleset))
            latencies.append(clock() - t0)
            largest = max(largest, len(raw))
    gc.unfreeze()
    return min(walls), min(cpus), sorted(latencies), largest


def main(
    employers: Annotated[int | None, typer.Option(help="a smaller month (default: national)")] = None,
    period: Annotated[str, typer.Option(help="the month declared")] = "2026-10",
    repeat: Annotated[int, typer.Option(help="runs of the command; the best is reported")] = 3,
) -> None:
    """Time `kalo rules assess --jsonl` on a month of declarations."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path, declarations, lines = _month(employers, period)
    size = path.stat().st_size
    print(f"month: {declarations:,} declarations, {lines:,} lines, {size / 1e6:.1f} MB ({path})")

    command = [*_kalo(), "rules", "assess", "--jsonl"]
    startups = [_run(command, None, OUT_DIR / "startup.jsonl") for _ in range(max(1, repeat))]
    startup_wall, startup_cpu, startup_rss, _ = min(startups)
    result = OUT_DIR / "assessments.jsonl"
    runs = [_run([*command, str(path)], None, result) for _ in range(max(1, repeat))]
    wall, cpu, rss, code = min(runs)
    if code != 0:
        raise SystemExit(f"kalo rules assess exited {code}")
    with result.open("rb") as out:
        produced = sum(1 for _ in out)
    if produced != declarations:
        raise SystemExit(f"{produced} results for {declarations} declarations")
    out_mb = result.stat().st_size / 1e6
    print(f"kalo rules assess --jsonl, one process ({len(runs)} run(s), best):")
    print(f"  wall {wall:.2f} s, CPU {cpu:.2f} s → {lines / wall:,.0f} lines/s end to end")
    print(
        f"  of which start-up (the kalo CLI's imports, empty input): wall {startup_wall:.2f} s, "
        f"CPU {startup_cpu:.2f} s; without it: {_rate(lines, wall - startup_wall)}"
    )
    print(
        f"  by CPU time (less disturbed by other processes): {lines / cpu:,.0f} lines/s end to end, "
        f"{_rate(lines, cpu - startup_cpu)} without the start-up"
    )
    print(
        f"  peak RSS {rss / 2**20:.0f} MiB (start-up alone {startup_rss / 2**20:.0f} MiB); "
        f"output {out_mb:.0f} MB"
    )

    elapsed, cpu_in, latencies, largest = _in_process(path, max(1, repeat))
    print(f"same stream loop in this process (JSON in and out, output discarded), best of {max(1, repeat)}:")
    print(
        f"  wall {elapsed:.2f} s → {lines / elapsed:,.0f} lines/s; "
        f"CPU {cpu_in:.2f} s → {lines / cpu_in:,.0f} lines/s"
    )
    print(
        "  latency per declaration (decode + assess + encode): "
        f"p50 {_percentile(latencies, 0.50) * 1e3:.3f} ms, p99 {_percentile(latencies, 0.99) * 1e3:.3f} ms, "
        f"max {latencies[-1] * 1e3:.1f} ms (largest input {largest / 1e6:.1f} MB)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process {peak:.0f} MiB")
    verdict = "meets" if lines / wall >= TARGET_LINES_PER_S else "below"
    print(f"target {TARGET_LINES_PER_S:,} lines/s end to end: {verdict} (a shared machine: pessimistic)")


if __name__ == "__main__":
    typer.run(main)
