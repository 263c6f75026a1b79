"""The month benchmark's report: what the workers did over time (sampled while the month
runs), written as JSON and drawn as a PNG chart.

Sampled every second, from outside the workers (nothing they export is assumed but
their /metrics page): the lines the assessment workers counted, the lines the ledger
committed (PostgreSQL), and each consumer group's lag from Kafka (end offsets minus the
group's committed offsets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

# Each sample sums the outcomes' lines (a scan of the ledger's table): once a second keeps
# the sampler's share of PostgreSQL small.
SAMPLE_S = 1.0


class Sampler:
    """Samples the running month until stopped: (t, lines, lag) per process or group."""

    def __init__(
        self,
        dsn: str,
        bootstrap: str,
        assessment_ports: dict[str, int],
        groups: dict[str, list[str]],
        period: str,
    ) -> None:
        self.dsn = dsn
        self.bootstrap = bootstrap
        self.assessment_ports = assessment_ports
        self.groups = groups  # consumer group -> its topics
        self.period = period
        self.samples: list[dict[str, Any]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, t0: float) -> None:
        self._task = asyncio.create_task(self._run(t0))

    async def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        return self.samples

    async def _run(self, t0: float) -> None:
        conn = await asyncpg.connect(self.dsn)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        ends = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        await admin.start()
        await ends.start()
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                while not self._stop.is_set():
                    sample: dict[str, Any] = {"t": time.monotonic() - t0, "lines": {}, "lag": {}}
                    for name, port in self.assessment_ports.items():
                        with contextlib.suppress(Exception):  # a page missed: the next sample has it
                            sample["lines"][name] = _lines_counted(
                                (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                            )
                    sample["lines"]["ledger"] = await conn.fetchval(
                        "SELECT coalesce(sum(line_count), 0) FROM ledger.declaration_outcomes"
                        " WHERE period = $1",
                        self.period,
                    )
                    for group, topics in self.groups.items():
                        with contextlib.suppress(Exception):
                            sample["lag"][group] = await _lag(admin, ends, group, topics)
                    self.samples.append(sample)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), SAMPLE_S)
        finally:
            await ends.stop()
            await admin.close()
            await conn.close()


def _lines_counted(text: str) -> float:
    """The assessment's lines counter (kalo_assessment_lines_total, every outcome)."""
    total = 0.0
    for line in text.splitlines():
        if line.split("{", 1)[0] == "kalo_assessment_lines_total":
            total += float(line.split()[-1])
    return total


async def _lag(admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer, group: str, topics: list[str]) -> int:
    tps = [TopicPartition(t, p) for t in topics for p in ends.partitions_for_topic(t) or ()]
    if not tps:
        for t in topics:
            await ends._client.force_metadata_update()  # the partitions of a new topic
            tps += [TopicPartition(t, p) for p in ends.partitions_for_topic(t) or ()]
    end = await ends.end_offsets(tps)
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    return sum(
        max(0, end[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0))
        for tp in tps
    )


def rates(samples: list[dict[str, Any]], name: str, window: int = 3) -> tuple[list[float], list[float]]:
    """Lines per second of one process over the last `window` samples (a batch of a large
    declaration lands at once: one sample apart, the rate is mostly noise)."""
    points = [(s["t"], s["lines"][name]) for s in samples if name in s["lines"]]
    ts, out = [], []
    for i in range(1, len(points)):
        t0, n0 = points[max(0, i - window)]
        t1, n1 = points[i]
        if t1 > t0:
            ts.append(t1)
            out.append((n1 - n0) / (t1 - t0))
    return ts, out


def write(report: dict[str, Any], out_dir: Path, stem: str = "bench_month") -> tuple[Path, Path]:
    """The report as JSON and its chart as PNG in `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=1, default=str))
    png_path = out_dir / f"{stem}.png"
    chart(report, png_path)
    return json_path, png_path


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report.get("samples", [])
    names = sorted({n for s in samples for n in s["lines"]})
    groups = sorted({g for s in samples for g in s["lag"]})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in names:
        ts, rs = rates(samples, name)
        top.plot(ts, rs, label=name)
    for group in groups:
        pts = [(s["t"], s["lag"][group]) for s in samples if group in s["lag"]]
        bottom.plot([p[0] for p in pts], [p[1] for p in pts], label=group.rsplit(".", 1)[-1])
    marks = [
        ("month end to end", report["seconds"], "black"),
        ("pass-through (aiokafka)", report["passthrough_s"], "tab:green"),
        ("SQL batch (COPY + INSERT … SELECT)", report["sql_batch_s"], "tab:red"),
        ("2 × SQL batch", 2 * report["sql_batch_s"], "tab:orange"),
    ]
    for ax in (top, bottom):
        for label, x, colour in marks:
            ax.axvline(x, color=colour, linestyle="--", linewidth=1, label=label if ax is top else None)
    top.set_ylabel("lines / s")
    top.set_title(
        f"{report['declarations']:,} declarations, {report['lines']:,} lines in {report['seconds']:.1f} s "
        f"({report['seconds'] / report['sql_batch_s']:.1f}× the SQL batch)"
    )
    top.legend(fontsize=8, loc="upper right")
    bottom.set_ylabel("consumer lag (messages)")
    bottom.set_xlabel("seconds since the first declaration was produced")
    bottom.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
