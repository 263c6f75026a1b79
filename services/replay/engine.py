"""Re-derive every decision of a time range with the law it was taken under.

1. The decision topics (`kalo.declarations.assessed`, `.rejected`) are read from the offsets
   Kafka gives for the range's start and end (`offsets_for_times`), partitions assigned by
   hand: no consumer group is joined, nothing is committed.
2. Their inputs (`kalo.declarations.submitted`, matched by causation id) are read from just
   before the earliest submission time of the range. Their audit records (matched by cause
   and action) come from the signed audit log with `verify`, by their deterministic ids;
   without it, from `kalo.audit` around the range.
3. Each ruleset is loaded from its stored tree (`kalo.rulesets`) after its content hash is
   checked against its id; a decision whose ruleset was never stored is counted unknown.
4. Each decision is re-derived with `services.rules` (the employer's registry record as the
   audit record kept it) and compared field by field with the recorded payload.
5. Unless `careers` is off, each liquidation's career snapshot is re-derived from the career
   topics read from their beginning up to its `as_of` offsets (services/replay/careers.py,
   one pass for all of them) and compared; the liquidation is re-derived from that career.

`verify`: the audit record is the signed log's (under a signed head), and its input and
output hashes are recomputed from the bytes on the topics. `against_ledger`: the ledger's
projections (employer periods, dues, careers) of the months whose declaration in force was
re-derived are compared with what that declaration gives.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from queue import Empty
from typing import Any

import asyncpg
import orjson
from aiokafka import TopicPartition

from contracts.declarations import ASSESSED_LINE_FIELDS, ITEM_COLUMNS, capped_errors
from services.common import kafka
from services.common.gc_tuning import tune_gc
from services.common.rulesets import read_rulesets
from services.common.settings import Settings
from services.liquidation.handlers import Career
from services.replay.careers import CAREER_TOPICS, Wanted, careers_as_of, wanted_of
from services.replay.careers import compare as compare_career
from services.replay.layout import LINES_BYTES, split_lines
from services.rules import Ruleset, RulesetMismatch, assess_declaration_compact, liquidate_claim, load_tree

ASSESSED = "kalo.declarations.assessed"
REJECTED = "kalo.declarations.rejected"
LIQUIDATIONS = "kalo.pensions.liquidations"
DECISION_TOPICS = (ASSESSED, REJECTED, LIQUIDATIONS)
SUBMITTED = "kalo.declarations.submitted"
CLAIMS = "kalo.pensions.claims"
AUDIT = "kalo.audit"
# How far around the range inputs and audit records are looked for.
INPUT_LEAD = timedelta(hours=1)
AUDIT_MARGIN = timedelta(minutes=10)
MAX_FIELDS_PER_EVENT = 20
MAX_LISTED = 1000  # unreadable records named in a report (all of them are counted)
_TYPE_OF = {
    ASSESSED: "declaration.assessed",
    REJECTED: "declaration.rejected",
    LIQUIDATIONS: "pension.liquidated",
}
_DATA = b',"data":'


# What the report counts of the careers: liquidations whose career was re-derived, of them equal
# to the snapshot carried, the career events read and those unreadable (the ledger parks them),
# the passes over the career topics (one unless snapshots went back: a ledger rebuilt).
CAREER_COUNTS = ("rederived", "equal", "events_read", "unreadable", "passes")


def _no_careers() -> dict[str, Any]:
    return {**dict.fromkeys(CAREER_COUNTS, 0), "not_rederivable": []}


@dataclass(frozen=True)
class Options:
    start: datetime
    end: datetime
    topics: tuple[str, ...] = DECISION_TOPICS
    employer: str | None = None
    verify: bool = False
    against_ledger: bool = False
    workers: int = 1  # processes, each replaying a share of the partitions
    careers: bool = True  # re-derive each liquidation's career from the career topics


@dataclass
class Report:
    start: str
    end: str
    topics: list[str]
    employer: str | None
    read: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    liquidations: int = 0  # of the re-derived: pension liquidations
    inputs: int = 0
    audit_records: int = 0
    rederived: int = 0
    equal: int = 0
    mismatched: int = 0
    lines: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    rulesets: Counter[str] = field(default_factory=Counter)  # decisions re-derived with each
    unknown_rulesets: Counter[str] = field(default_factory=Counter)
    bad_rulesets: dict[str, str] = field(default_factory=dict)
    missing_inputs: list[str] = field(default_factory=list)
    without_audit: list[str] = field(default_factory=list)
    audit_problems: list[dict[str, Any]] = field(default_factory=list)
    # Records on the decision topics that are no decision (bytes that are not an envelope of
    # the topic's type): counted, the first MAX_LISTED named; the services parked them.
    unreadable: int = 0
    unreadable_listed: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, Any] | None = None
    careers: dict[str, Any] | None = None  # see CAREER_COUNTS; None: careers not re-derived
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # seconds spent in each step

    def merge(self, other: Report) -> None:
        """Add a share of the partitions replayed by another process."""
        self.read.update(other.read)
        self.rulesets.update(other.rulesets)
        self.unknown_rulesets.update(other.unknown_rulesets)
        self.bad_rulesets.update(other.bad_rulesets)
        for name in (
            "duplicates",
            "inputs",
            "audit_records",
            "rederived",
            "equal",
            "mismatched",
            "lines",
            "liquidations",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("mismatches", "missing_inputs", "without_audit", "audit_problems"):
            getattr(self, name).extend(getattr(other, name))
        self.unreadable += other.unreadable
        self.unreadable_listed.extend(other.unreadable_listed[: MAX_LISTED - len(self.unreadable_listed)])
        if other.ledger is not None:
            if self.ledger is None:
                self.ledger = {"months": 0, "dues": 0, "careers": 0, "mismatches": []}
            for name in ("months", "dues", "careers"):
                self.ledger[name] += other.ledger[name]
            self.ledger["mismatches"].extend(other.ledger["mismatches"])
        if other.careers is not None:
            if self.careers is None:
                self.careers = _no_careers()
            for name in CAREER_COUNTS:
                self.careers[name] += other.careers[name]
            self.careers["not_rederivable"].extend(other.careers["not_rederivable"])
        for stage, seconds in other.stages.items():
            self.stages[stage] = max(self.stages.get(stage, 0.0), seconds)

    def lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + now - since, 3)
        return now

    @property
    def ok(self) -> bool:
        return not (
            self.mismatched
            or self.unknown_rulesets
            or self.missing_inputs
            or self.without_audit
            or self.audit_problems
            # Something not a decision on a decision topic: nothing re-derives it, and Kalo's
            # services never write one there.
            or self.unreadable
            or (self.ledger and self.ledger["mismatches"])
            # A career that cannot be re-derived is a gap, like a decision whose input is missing:
            # its liquidation was computed from a career nothing on the topics vouches for (a
            # forger need only drop `as_of`). `--no-careers` is the auditor's way to accept that.
            or (self.careers and self.careers["not_rederivable"])
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "from": self.start,
            "to": self.end,
            "topics": self.topics,
            "employer": self.employer,
            "read": dict(self.read),
            "events_read": sum(self.read.values()),
            "duplicates": self.duplicates,
            "inputs_read": self.inputs,
            "audit_records_read": self.audit_records,
            "rederived": self.rederived,
            "equal": self.equal,
            "mismatched": self.mismatched,
            "lines": self.lines,
            "liquidations": self.liquidations,
            "seconds": round(self.seconds, 3),
            "stages": self.stages,
            "lines_per_s": round(self.lines / self.seconds) if self.seconds else None,
            "mismatches": self.mismatches,
            "rulesets": dict(self.rulesets),
            "unknown_rulesets": dict(self.unknown_rulesets),
            "rulesets_refused": self.bad_rulesets,
            "missing_inputs": self.missing_inputs,
            "without_audit": self.without_audit,
            "audit_problems": self.audit_problems,
            "unreadable": self.unreadable,
            "unreadable_listed": self.unreadable_listed,
            "ledger": self.ledger,
            "careers": self.careers,
        }


Progress = Callable[[str, int, int], None]  # stage, done, total


async def stream_window(
    settings: Settings,
    registry_name: str,
    start: datetime,
    end: datetime,
    *,
    key: bytes | None = None,
    keys: set[bytes] | None = None,
    part: tuple[int, int] = (0, 1),
    on_progress: Callable[[int, int], None] | None = None,
) -> AsyncIterator[list[bytes]]:
    """The values of a topic's records produced in [start, end), batch by batch, partitions
    assigned by hand (`part` = (i, n): only the partitions p with p % n == i)."""
    name = kafka.topic(registry_name, settings)
    consumer = kafka.consumer(group_id=None, settings=settings, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [
            TopicPartition(name, p)
            for p in await kafka.partitions_of(name, settings)
            if p % part[1] == part[0]
        ]
        if not tps:
            return
        consumer.assign(tps)
        last = await consumer.end_offsets(tps)
        firsts = await consumer.offsets_for_times({tp: _ms(start) for tp in tps})
        lasts = await consumer.offsets_for_times({tp: _ms(end) for tp in tps})
        bounds = {}
        for tp in tps:
            lo = firsts[tp].offset if firsts[tp] is not None else last[tp]
            hi = lasts[tp].offset if lasts[tp] is not None else last[tp]
            if lo < hi:
                bounds[tp] = (lo, hi)
        if not bounds:
            return
        consumer.assign(list(bounds))
        for tp, (lo, _) in bounds.items():
            consumer.seek(tp, lo)
        total = sum(hi - lo for lo, hi in bounds.values())
        done = 0
        open_tps = dict(bounds)
        while open_tps:
            batches = await consumer.getmany(*open_tps, timeout_ms=1000)
            out: list[bytes] = []
            for tp, records in batches.items():
                hi = open_tps.get(tp, (0, 0))[1]
                for r in records:
                    if r.offset < hi:
                        done += 1
                        if (
                            (key is None or r.key == key)
                            and (keys is None or r.key in keys)
                            and r.value is not None
                        ):
                            out.append(r.value)
            for tp in list(open_tps):
                if await consumer.position(tp) >= open_tps[tp][1]:
                    del open_tps[tp]
                    consumer.pause(tp)
            if on_progress:
                on_progress(done, total)
            if out:
                yield out
    finally:
        await consumer.stop()


async def read_window(
    settings: Settings,
    registry_name: str,
    start: datetime,
    end: datetime,
    *,
    key: bytes | None = None,
    keys: set[bytes] | None = None,
    part: tuple[int, int] = (0, 1),
    on_progress: Callable[[int, int], None] | None = None,
) -> list[bytes]:
    """`stream_window`, gathered."""
    out: list[bytes] = []
    async for values in stream_window(
        settings, registry_name, start, end, key=key, keys=keys, part=part, on_progress=on_progress
    ):
        out.extend(values)
    return out


class FromTheBeginning:
    """Topics read forward once from their first offset, up to successive offsets
    (services.replay.careers.Reader): partitions assigned by hand, no consumer group, nothing
    committed. Only the partitions still short of the offsets asked are fetched; records
    fetched past them are held for the next call."""

    def __init__(self, settings: Settings, registry_names: Iterable[str]) -> None:
        self.settings = settings
        self.names = {kafka.topic(name, settings): name for name in registry_names}
        self.consumer = kafka.consumer(group_id=None, settings=settings, fetch_max_wait_ms=100)
        self.tps: dict[tuple[str, int], TopicPartition] = {}  # (registry name, partition) → tp
        self.first: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.held: dict[TopicPartition, list[Any]] = {}

    async def __aenter__(self) -> FromTheBeginning:
        await self.consumer.start()
        for physical, name in self.names.items():
            for p in await kafka.partitions_of(physical, self.settings):
                self.tps[(name, p)] = TopicPartition(physical, p)
        tps = list(self.tps.values())
        if tps:
            self.consumer.assign(tps)
            self.first = await self.consumer.beginning_offsets(tps)
            self.end = await self.consumer.end_offsets(tps)
            for tp in tps:
                self.consumer.seek(tp, self.first[tp])
            self.consumer.pause(*tps)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    def problem(self, offsets: Mapping[tuple[str, int], int]) -> str | None:
        for (name, p), n in sorted(offsets.items()):
            tp = self.tps.get((name, p))
            if tp is None:
                if n > 0:
                    return f"{name} has no partition {p}"
            elif n > self.end[tp]:
                return f"{name}[{p}] ends at offset {self.end[tp]}, before {n}"
            elif n > 0 and self.first[tp] > 0:  # retention removed its beginning
                return f"{name}[{p}] now begins at offset {self.first[tp]}"
        return None

    async def _next(self, tp: TopicPartition) -> int:
        held = self.held.get(tp)
        return int(held[0].offset) if held else await self.consumer.position(tp)

    async def upto(
        self, offsets: Mapping[tuple[str, int], int]
    ) -> AsyncIterator[list[tuple[str, bytes | None, bytes]]]:
        short: dict[TopicPartition, int] = {}
        for key, n in offsets.items():
            tp = self.tps.get(key)
            if tp is not None and await self._next(tp) < n:
                short[tp] = n
        if not short:
            return
        out: list[tuple[str, bytes | None, bytes]] = []
        for tp, n in short.items():  # first what an earlier fetch brought past its offsets then
            held = self.held.pop(tp, [])
            self._take(tp, held, n, out)
        if out:
            yield out
        short = {tp: n for tp, n in short.items() if await self._next(tp) < n}
        if short:
            self.consumer.resume(*short)
        while short:
            batches = await self.consumer.getmany(*short, timeout_ms=1000)
            out = []
            for tp, records in batches.items():
                self._take(tp, records, short.get(tp, 0), out)
            for tp in list(short):
                if await self._next(tp) >= short[tp]:
                    del short[tp]
                    self.consumer.pause(tp)
            if out:
                yield out

    def _take(
        self, tp: TopicPartition, records: list[Any], below: int, out: list[tuple[str, bytes | None, bytes]]
    ) -> None:
        name = self.names[tp.topic]
        for i, r in enumerate(records):
            if r.offset >= below:
                self.held[tp] = [*records[i:], *self.held.get(tp, [])]
                return
            if r.value is not None:
                out.append((name, r.key, r.value))


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def payload_bytes(raw: bytes) -> bytes:
    """The `data` of an envelope as sent (the last member: what the audit's output hash
    covers); empty when the envelope is not laid out so (its hash then matches nothing)."""
    i = raw.find(_DATA)
    if i < 0 or not raw.endswith(b"}"):
        return b""
    return raw[i + len(_DATA) : -1]


class Rulesets:
    """Stored trees, loaded on first use, each checked against its id."""

    def __init__(self, trees: dict[str, dict[str, bytes]], report: Report) -> None:
        self.trees = trees
        self.loaded: dict[str, Ruleset | None] = {}
        self.report = report

    def get(self, ruleset_id: str) -> Ruleset | None:
        if ruleset_id not in self.loaded:
            tree = self.trees.get(ruleset_id)
            ruleset = None
            if tree is not None:
                try:
                    ruleset = load_tree(tree, expected_id=ruleset_id)
                except (RulesetMismatch, ValueError) as exc:
                    self.report.bad_rulesets[ruleset_id] = str(exc)
            self.loaded[ruleset_id] = ruleset
        return self.loaded[ruleset_id]


def rules_input(submitted: dict[str, Any]) -> dict[str, Any]:
    d = submitted["data"]
    return {
        "declaration_id": d["declaration_id"],
        "employer": d["employer"],
        "period": d["period"],
        "submitted_at": d["submitted_at"],
        "replaces": d.get("replaces"),
        "lines": d["lines"],
    }


def rederived_view(result: dict[str, Any]) -> dict[str, Any]:
    """What the assessment would have sent, in the fields a replay compares."""
    if result["status"] == "accepted":
        return {
            "status": "accepted",
            "ruleset": result["ruleset"],
            "due_date": result["due_date"],
            "months_late": result["months_late"],
            "surcharge": result["surcharge"],
            "totals": result["totals"],
            "rates": result["rates"],
            "lines": result["lines"],
        }
    errors = [{k: e.get(k) for k in ("line", "worker_id", "code", "message")} for e in result["errors"]]
    listed, counts, omitted = capped_errors(errors)
    view: dict[str, Any] = {"status": "rejected", "ruleset": result["ruleset"], "errors": listed}
    if omitted:
        view["error_counts"] = counts
        view["errors_omitted"] = omitted
    return view


def recorded_view(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    if kind == ASSESSED:
        keys = ("ruleset", "due_date", "months_late", "surcharge", "totals", "rates", "lines")
        return {"status": "accepted", **{k: data.get(k) for k in keys}}  # lines: see split_lines
    view = {"status": "rejected", "ruleset": data.get("ruleset"), "errors": data.get("errors")}
    if data.get("errors_omitted"):
        view["error_counts"] = data.get("error_counts")
        view["errors_omitted"] = data.get("errors_omitted")
    return view


def _same(a: Any, b: Any) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _same_view(recorded: dict[str, Any], rederived: dict[str, Any], same_lines: bool) -> bool:
    """`_same`, without encoding the lines again when they are already known equal."""
    if not same_lines:
        return _same(recorded, rederived)
    return recorded.keys() == rederived.keys() and all(
        _same(v, rederived[k]) for k, v in recorded.items() if k != "lines"
    )


def differences(recorded: Any, rederived: Any, path: str = "") -> Iterable[tuple[str, Any, Any]]:
    """(field path, recorded, re-derived) of every leaf that differs; lines by worker field
    and item column."""
    if isinstance(recorded, dict) and isinstance(rederived, dict):
        for k in sorted(set(recorded) | set(rederived), key=str):
            yield from differences(recorded.get(k), rederived.get(k), f"{path}.{k}" if path else str(k))
        return
    if isinstance(recorded, list | tuple) and isinstance(rederived, list | tuple):
        if path == "lines":
            for i, (a, b) in enumerate(zip(recorded, rederived, strict=False)):
                if not _same(a, b):
                    yield from _line_differences(i, a, b)
        else:
            for i, (a, b) in enumerate(zip(recorded, rederived, strict=False)):
                yield from differences(a, b, f"{path}[{i}]")
        if len(recorded) != len(rederived):
            yield f"{path}.length", len(recorded), len(rederived)
        return
    if not _same(recorded, rederived):
        yield path, recorded, rederived


def _line_differences(i: int, a: Any, b: Any) -> Iterable[tuple[str, Any, Any]]:
    if not (
        isinstance(a, list | tuple)
        and isinstance(b, list | tuple)
        and len(a) == len(b) == len(ASSESSED_LINE_FIELDS)
    ):
        yield f"lines[{i}]", a, b
        return
    for name, x, y in zip(ASSESSED_LINE_FIELDS, a, b, strict=True):
        if name == "amounts" and isinstance(x, list | tuple) and isinstance(y, list | tuple):
            for column, p, q in zip(ITEM_COLUMNS, x, y, strict=False):
                if p != q:
                    yield f"lines[{i}].amounts.{column}", p, q
        elif not _same(x, y):
            yield f"lines[{i}].{name}", x, y


async def replay(settings: Settings, options: Options, progress: Progress | None = None) -> Report:
    """Replay the range; with `options.workers` > 1, in as many processes, each taking the
    partitions p % n == i (the machine's cores re-derive side by side)."""
    started = time.perf_counter()
    tune_gc()
    workers = max(1, options.workers)
    if workers > 1 and not await _keyed_alike(settings, options):
        workers = 1
    if workers == 1:
        report = await replay_part(settings, options, (0, 1), progress)
    elif options.careers and LIQUIDATIONS in options.topics:
        # The careers' pass reads the career topics whole: made once, by the liquidations
        # replayed here, beside the processes that share the declarations' partitions (each
        # would otherwise make its own pass, and hold its own employer-months).
        rest = tuple(t for t in options.topics if t != LIQUIDATIONS)
        alone = replace(options, topics=(LIQUIDATIONS,))
        parts = [replay_part(settings, alone, (0, 1), progress)]
        if rest:
            parts.append(_in_processes(settings, replace(options, topics=rest), workers, progress))
        report, *others = await asyncio.gather(*parts)
        for other in others:
            report.merge(other)
        report.topics = list(options.topics)
    else:
        report = await _in_processes(settings, options, workers, progress)
    report.seconds = time.perf_counter() - started
    return report


async def _keyed_alike(settings: Settings, options: Options) -> bool:
    """The decision topics and the inputs have as many partitions (so an employer's input and
    decisions have the same partition number)."""
    counts = {
        len(await kafka.partitions_of(kafka.topic(n, settings), settings))
        for n in (*options.topics, SUBMITTED)
    }
    return len(counts) == 1


_QUEUE: Any = None


def _init_worker(queue: Any) -> None:
    global _QUEUE
    _QUEUE = queue


def _run_part(settings: dict[str, Any], options: Options, part: tuple[int, int]) -> Report:
    def progress(stage: str, done: int, total: int) -> None:
        if _QUEUE is not None:
            _QUEUE.put((stage, part[0], done, total))

    tune_gc()  # millions of short-lived parsed values: see services/common/gc_tuning
    where = os.environ.get("KALO_REPLAY_PROFILE")  # a cProfile of each process into DIR
    if not where:
        return asyncio.run(replay_part(Settings(**settings), options, part, progress))
    import cProfile

    with cProfile.Profile() as profile:
        report = asyncio.run(replay_part(Settings(**settings), options, part, progress))
    profile.dump_stats(f"{where}/replay-{part[0]}.prof")
    return report


async def _in_processes(
    settings: Settings, options: Options, workers: int, progress: Progress | None
) -> Report:
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no event loop or socket inherited
    queue = ctx.Queue()
    loop = asyncio.get_running_loop()
    seen: dict[tuple[str, int], tuple[int, int]] = {}

    def drain() -> None:
        while True:
            try:
                stage, part, done, total = queue.get_nowait()
            except Empty:
                break
            seen[(stage, part)] = (done, total)
            if progress:
                mine = [v for (st, _), v in seen.items() if st == stage]
                progress(stage, sum(d for d, _ in mine), sum(t for _, t in mine))

    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)) as pool:
        futures = [
            loop.run_in_executor(pool, _run_part, settings.model_dump(), options, (i, workers))
            for i in range(workers)
        ]
        while not all(f.done() for f in futures):
            drain()
            await asyncio.wait(futures, timeout=0.1)
        drain()
        parts = [f.result() for f in futures]
    report = parts[0]
    for other in parts[1:]:
        report.merge(other)
    return report


async def replay_part(
    settings: Settings, options: Options, part: tuple[int, int] = (0, 1), progress: Progress | None = None
) -> Report:
    """The replay of the partitions p % n == i of the decision and input topics (keyed alike,
    by employer: an employer's inputs and decisions share a partition number)."""
    started = time.perf_counter()
    report = Report(
        start=options.start.isoformat(),
        end=options.end.isoformat(),
        topics=list(options.topics),
        employer=options.employer,
    )
    key = options.employer.encode() if options.employer is not None else None

    # The decisions, kept as their bytes (parsed again when their input comes): a month's
    # parsed lines would take gigabytes.
    # cause → (topic, event, SHA-256 of its payload as sent)
    decisions: dict[str, list[tuple[str, dict[str, Any], str]]] = {}
    liquidations: list[tuple[dict[str, Any], str]] = []  # self-contained: claim and career inside
    subjects: set[bytes] = set()
    seen: set[str] = set()
    earliest: datetime | None = None
    for name in options.topics:
        values = await read_window(
            settings,
            name,
            options.start,
            options.end,
            key=key,
            part=part,
            on_progress=(lambda d, t, name=name: progress(f"reading {name}", d, t)) if progress else None,
        )
        for raw in values:
            doc = _object(raw, assessed=name == ASSESSED)
            problem = _not_a_decision(name, doc)
            if doc is None or problem is not None:
                _unreadable(report, name, doc, problem or "not a JSON object")
                continue
            event_id = doc.get("id")
            if event_id in seen:  # delivered twice (a worker restarted): one decision
                report.duplicates += 1
                continue
            seen.add(event_id)
            sent = hashlib.sha256(payload_bytes(raw)).hexdigest() if options.verify else ""
            subjects.add(str(doc["correlation_id"]).encode())
            if name == LIQUIDATIONS:
                liquidations.append((doc, sent))
                continue
            decisions.setdefault(doc["causation_id"], []).append((name, doc, sent))
            at = datetime.fromisoformat(doc["data"]["submitted_at"])
            earliest = at if earliest is None or at < earliest else earliest
        report.read[name] = len(values)
        del values
    t = report.lap("read decisions", started)
    if not decisions and not liquidations:
        report.seconds = time.perf_counter() - started
        return report
    causes = set(decisions) | {doc["causation_id"] for doc, _ in liquidations}

    if options.verify:
        # The audit records straight from the signed log, by subject: what the control
        # commission keeps is what is checked (and the topic, which every part would
        # otherwise read whole, since it is keyed by subject, is not read at all).
        audits = await audits_from_log(settings, report, subjects, causes)
        t = report.lap("read audit log", t)
    else:
        audits = await audits_from_topic(settings, options, subjects, causes, progress)
        t = report.lap("read audit records", t)
    report.audit_records = len(audits)

    rulesets = Rulesets(await read_rulesets(settings), report)
    t = report.lap("read rulesets", t)
    in_force: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # declaration id → (view, data)
    total = sum(len(v) for v in decisions.values())
    done = 0

    def rederive(raw_input: bytes) -> None:
        nonlocal done
        submitted = _object(raw_input)
        if submitted is None:
            return  # no declaration (the assessment parked it): no decision's input
        input_id = submitted.get("id")
        pending = decisions.pop(input_id, None) if isinstance(input_id, str) else None
        if pending is None:
            return
        report.inputs += 1
        for name, doc, sent in pending:
            done += 1
            versions = audits.get((doc["causation_id"], _TYPE_OF[name]))
            try:
                _one(report, options, rulesets, in_force, name, doc, sent, submitted, raw_input, versions)
            except Exception as exc:  # bytes no service wrote: reported, the replay goes on
                _not_rederived(report, doc, exc)
        if progress and done % 500 == 0:
            progress("re-deriving", done, total)

    if decisions and earliest is not None:
        async for values in stream_window(
            settings, SUBMITTED, min(earliest, options.start) - INPUT_LEAD, options.end, key=key, part=part
        ):
            for raw_input in values:
                rederive(raw_input)
    if liquidations:
        claims: dict[str, str] = {}  # the claims' SHA-256, for the audit records' input hash
        if options.verify:
            wanted = {doc["causation_id"] for doc, _ in liquidations}
            async for values in stream_window(
                settings, CLAIMS, options.start - INPUT_LEAD, options.end, key=key, part=part
            ):
                for raw_claim in values:
                    claim_doc = _object(raw_claim)
                    claim_id = claim_doc.get("id") if claim_doc is not None else None
                    if isinstance(claim_id, str) and claim_id in wanted:
                        claims[claim_id] = hashlib.sha256(raw_claim).hexdigest()
        careers: dict[str, Career] = {}
        if options.careers:
            t = report.lap("re-derive", t)
            careers = await rederive_careers(settings, report, [doc for doc, _ in liquidations], progress)
            t = report.lap("re-derive careers", t)
        for doc, sent in liquidations:
            versions = audits.get((doc["causation_id"], _TYPE_OF[LIQUIDATIONS]))
            claim = claims.get(doc["causation_id"])
            career = careers.get(doc["id"])
            try:
                _one_liquidation(report, options, rulesets, doc, sent, versions, claim, career)
            except Exception as exc:  # bytes no service wrote: reported, the replay goes on
                _not_rederived(report, doc, exc)
    if progress:
        progress("re-deriving", done, total)
    for pending in decisions.values():  # their input was never found
        for name, doc, _ in pending:
            report.missing_inputs.append(doc["id"])
            if not audits.get((doc["causation_id"], _TYPE_OF[name])):
                report.without_audit.append(doc["id"])
    t = report.lap("re-derive", t)
    if options.against_ledger:
        report.ledger = await compare_ledger(settings, in_force)
        t = report.lap("ledger", t)
    report.seconds = time.perf_counter() - started
    return report


async def rederive_careers(
    settings: Settings, report: Report, docs: list[dict[str, Any]], progress: Progress | None
) -> dict[str, Career]:
    """Each liquidation's career (by event id) re-derived from the career topics as of its
    `as_of`, in one pass over the topics from their beginning; those that cannot be are listed."""
    counts = report.careers = _no_careers()
    claim_of = {doc["id"]: doc["data"].get("claim_id") for doc in docs}
    wanted: list[Wanted] = []
    for doc in docs:
        asked = wanted_of(doc)
        if isinstance(asked, str):
            counts["not_rederivable"].append(
                {"event_id": doc["id"], "claim_id": claim_of[doc["id"]], "reason": asked}
            )
        else:
            wanted.append(asked)
    if not wanted:
        return {}
    result = await careers_as_of(
        wanted,
        lambda: FromTheBeginning(settings, CAREER_TOPICS),
        on_progress=(lambda d, t: progress("reading the career topics", d, t)) if progress else None,
    )
    for event_id, why in result.problems.items():
        counts["not_rederivable"].append(
            {"event_id": event_id, "claim_id": claim_of[event_id], "reason": why}
        )
    counts["rederived"] = len(result.careers)
    counts["events_read"] = result.records
    counts["unreadable"] = result.unreadable
    counts["passes"] = result.passes
    return result.careers


def _object(raw: bytes, *, assessed: bool = False) -> dict[str, Any] | None:
    """A record's JSON object (an assessed one with its lines kept as bytes), or None for
    bytes that are not one."""
    try:
        doc = split_lines(raw) if assessed else orjson.loads(raw)
    except (ValueError, TypeError, KeyError):  # not JSON, or not laid out as an object
        return None
    return doc if isinstance(doc, dict) else None


def _not_a_decision(name: str, doc: dict[str, Any] | None) -> str | None:
    """Why a record of a decision topic is no decision the replay can read, or None."""
    if doc is None:
        return "not a JSON object"
    data = doc.get("data")
    if not (isinstance(doc.get("id"), str) and isinstance(doc.get("causation_id"), str)):
        return "no envelope: id and causation_id must be texts"
    if "correlation_id" not in doc or not isinstance(data, dict):
        return "no envelope: correlation_id and data (an object) missing"
    if doc.get("type") != _TYPE_OF[name]:
        return f"type {str(doc.get('type'))[:80]!r} on {name}"
    if name == LIQUIDATIONS:
        shapes = (("worker_id", str), ("claim", dict), ("career", list), ("liquidation", dict))
        if not all(isinstance(data.get(k), t) for k, t in shapes):
            return "a liquidation without worker_id, claim, career and liquidation"
        return None
    try:
        datetime.fromisoformat(data["submitted_at"])
    except (KeyError, TypeError, ValueError):
        return "a declaration without a submitted_at time"
    return None


def _unreadable(report: Report, name: str, doc: dict[str, Any] | None, problem: str) -> None:
    report.unreadable += 1
    if len(report.unreadable_listed) < MAX_LISTED:
        event_id = doc.get("id") if doc is not None else None
        where = {"topic": name, "id": event_id if isinstance(event_id, str) else None}
        report.unreadable_listed.append({**where, "problem": problem})


def _not_rederived(report: Report, doc: dict[str, Any], exc: Exception) -> None:
    """A decision whose re-derivation failed on what it carries: a mismatch, named."""
    report.mismatched += 1
    report.mismatches.append(
        {
            "event_id": doc.get("id"),
            "field": "(re-derivation)",
            "recorded": None,
            "rederived": f"failed: {exc!r}"[:500],
        }
    )


def _one(
    report: Report,
    options: Options,
    rulesets: Rulesets,
    in_force: dict[str, tuple[dict[str, Any], dict[str, Any]]],
    name: str,
    doc: dict[str, Any],
    sent_sha256: str,
    submitted: dict[str, Any],
    raw_input: bytes,
    versions: list[dict[str, Any]] | None,
) -> None:
    """Re-derive one decision from its input and compare."""
    data = doc["data"]
    event_id = doc["id"]
    audit = versions[0] if versions else None
    if audit is None:
        report.without_audit.append(event_id)
    if options.verify and audit is not None:
        _verify_hashes(report, event_id, audit, raw_input, sent_sha256)
    ruleset = rulesets.get(data.get("ruleset") or "")
    if ruleset is None:
        report.unknown_rulesets[data.get("ruleset") or "(none)"] += 1
        return
    registry = audit["data"].get("details", {}).get("registry") if audit else None
    kwargs: dict[str, Any] = {"registry": registry} if audit is not None else {}
    result = assess_declaration_compact(rules_input(submitted), ruleset, line_arrays=True, **kwargs)
    rederived, recorded = rederived_view(result), recorded_view(name, data)
    report.rederived += 1
    report.rulesets[ruleset.id] += 1
    report.lines += len(submitted["data"]["lines"])
    lines_json = data.get(LINES_BYTES)
    same_lines = False
    if lines_json is not None and "lines" in rederived:
        # The recorded lines as bytes: equal to the re-derived ones encoded alike, or parsed.
        same_lines = orjson.dumps(rederived["lines"]) == lines_json
        recorded["lines"] = rederived["lines"] if same_lines else orjson.loads(lines_json)
    elif lines_json is not None:
        recorded["lines"] = orjson.loads(lines_json)
    if _same_view(recorded, rederived, same_lines):
        report.equal += 1
    else:
        report.mismatched += 1
        for path, was, now in list(differences(recorded, rederived))[:MAX_FIELDS_PER_EVENT]:
            report.mismatches.append(
                {
                    "event_id": event_id,
                    "declaration_id": data.get("declaration_id"),
                    "field": path,
                    "recorded": was,
                    "rederived": now,
                }
            )
    if name == ASSESSED and result["status"] == "accepted":
        in_force[data["declaration_id"]] = (rederived, data)


def _one_liquidation(
    report: Report,
    options: Options,
    rulesets: Rulesets,
    doc: dict[str, Any],
    sent_sha256: str,
    versions: list[dict[str, Any]] | None,
    claim_sha256: str | None,
    career: Career | None = None,
) -> None:
    """Re-derive one liquidation from the claim and career snapshot it carries, and compare;
    given the career re-derived from the career topics, the snapshot is compared with it and
    the liquidation re-derived from it (a forged career with amounts to match is caught)."""
    data = doc["data"]
    event_id = doc["id"]
    audit = versions[0] if versions else None
    if audit is None:
        report.without_audit.append(event_id)
    elif options.verify:
        if claim_sha256 is None:
            report.audit_problems.append(
                {"event_id": event_id, "problem": "its claim is not on kalo.pensions.claims"}
            )
        elif audit["data"].get("input_sha256") != claim_sha256:
            report.audit_problems.append(
                {"event_id": event_id, "problem": "the audit record's input_sha256 is not the claim's"}
            )
        if audit["data"].get("output_sha256") != sent_sha256:
            report.audit_problems.append(
                {"event_id": event_id, "problem": "the audit record's output_sha256 is not the output's"}
            )
    ruleset = rulesets.get(data.get("ruleset") or "")
    if ruleset is None:
        report.unknown_rulesets[data.get("ruleset") or "(none)"] += 1
        return
    found: list[tuple[str, Any, Any]] = []
    months: Any = data["career"]
    if career is not None:
        found = compare_career(data, career)
        months = career.months
        if not found and report.careers is not None:
            report.careers["equal"] += 1
    rederived = liquidate_claim({**data["claim"], "career": months}, ruleset)
    recorded = data["liquidation"]
    report.rederived += 1
    report.liquidations += 1
    report.rulesets[ruleset.id] += 1
    if not found and _same(recorded, rederived):
        report.equal += 1
        return
    report.mismatched += 1
    found.extend(differences(recorded, rederived, "liquidation"))
    for path, was, now in found[:MAX_FIELDS_PER_EVENT]:
        report.mismatches.append(
            {
                "event_id": event_id,
                "claim_id": data.get("claim_id"),
                "field": path,
                "recorded": was,
                "rederived": now,
            }
        )


def _verify_hashes(
    report: Report, event_id: str, audit: dict[str, Any], raw_input: bytes, output_sha256: str
) -> None:
    data = audit["data"]
    if data.get("input_sha256") != hashlib.sha256(raw_input).hexdigest():
        report.audit_problems.append(
            {"event_id": event_id, "problem": "the audit record's input_sha256 is not the input's"}
        )
    if data.get("output_sha256") != output_sha256:
        report.audit_problems.append(
            {"event_id": event_id, "problem": "the audit record's output_sha256 is not the output's"}
        )


async def audits_from_topic(
    settings: Settings,
    options: Options,
    subjects: set[bytes],
    causes: set[str],
    progress: Progress | None,
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The audit events of the decisions, from `kalo.audit` (keyed by subject: only these are
    read). An audit event emitted twice has one id but two `occurred_at`: every version is
    kept (the log keeps the first it consumed)."""
    audits: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for raw in await read_window(
        settings,
        AUDIT,
        options.start - AUDIT_MARGIN,
        options.end + AUDIT_MARGIN,
        keys=subjects,
        on_progress=(lambda d, t: progress("reading audit records", d, t)) if progress else None,
    ):
        doc = _object(raw)
        data = doc.get("data") if doc is not None else None
        if doc is not None and isinstance(data, dict) and doc.get("causation_id") in causes:
            audits.setdefault((doc["causation_id"], str(data.get("action"))), []).append(doc)
    return audits


async def audits_from_log(
    settings: Settings, report: Report, subjects: set[bytes], causes: set[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The audit records of the decisions (their subjects, their causes) as the signed audit
    log keeps them, in log order. A record past the last signed head is a problem: nothing
    vouches for it yet. A decision whose record is not in the log is left out (reported as
    without its audit record)."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        signed = await conn.fetchval("SELECT coalesce(max(tree_size), 0) FROM audit.heads")
        rows = await conn.fetch(
            "SELECT event_id::text, seq, record FROM audit.records"
            " WHERE subject = ANY($1::text[]) AND action = ANY($2::text[]) ORDER BY seq",
            [s.decode() for s in subjects],
            list(_TYPE_OF.values()),
        )
    finally:
        await conn.close()
    audits: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event_id, seq, record in rows:
        doc = orjson.loads(record)
        cause = doc.get("causation_id")
        if cause not in causes:
            continue
        if seq >= signed:
            report.audit_problems.append(
                {"event_id": event_id, "problem": f"audit log record {seq} is not yet under a signed head"}
            )
        audits.setdefault((cause, doc["data"]["action"]), []).append(doc)
    return audits


async def _ledger_schema(conn: asyncpg.Connection) -> str:
    return "ledger." if await conn.fetchval("SELECT to_regclass('ledger.careers') IS NOT NULL") else ""


async def compare_ledger(
    settings: Settings, in_force: dict[str, tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, Any]:
    """The ledger's rows of every month whose declaration in force was re-derived, against
    what that declaration re-derives to."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        schema = await _ledger_schema(conn)
        periods = await conn.fetch(
            f"SELECT employer_id, period, declaration_id, months_late, total, surcharge "
            f"FROM {schema}employer_periods WHERE declaration_id = ANY($1::text[])",
            list(in_force),
        )
        keys = [(r["employer_id"], r["period"]) for r in periods]
        employers = [k[0] for k in keys]
        months = [k[1] for k in keys]
        dues = await conn.fetch(
            f"SELECT d.employer_id, d.period, d.fund, d.amount FROM {schema}employer_dues d "
            "JOIN unnest($1::text[], $2::text[]) AS m(e, p) ON d.employer_id = m.e AND d.period = m.p",
            employers,
            months,
        )
        careers = await conn.fetch(
            f"SELECT c.employer_id, c.period, c.worker_id, c.base FROM {schema}careers c "
            "JOIN unnest($1::text[], $2::text[]) AS m(e, p) ON c.employer_id = m.e AND c.period = m.p",
            employers,
            months,
        )
    finally:
        await conn.close()
    mismatches: list[dict[str, Any]] = []

    def mismatch(table: str, key: str, column: str, ledger: Any, rederived: Any) -> None:
        mismatches.append(
            {"table": table, "key": key, "field": column, "ledger": ledger, "rederived": rederived}
        )

    ledger_dues: dict[tuple[str, str], dict[str, int]] = {}
    for r in dues:
        ledger_dues.setdefault((r["employer_id"], r["period"]), {})[r["fund"]] = r["amount"]
    ledger_careers: dict[tuple[str, str], dict[str, int]] = {}
    for r in careers:
        ledger_careers.setdefault((r["employer_id"], r["period"]), {})[r["worker_id"]] = r["base"]
    for p in periods:
        view, _ = in_force[p["declaration_id"]]
        month = (p["employer_id"], p["period"])
        where = f"{p['employer_id']} {p['period']}"
        if p["total"] != view["totals"]["total"]:
            mismatch("employer_periods", where, "total", p["total"], view["totals"]["total"])
        expected_dues = dict(view["totals"]["by_fund"])
        got_dues = ledger_dues.get(month, {})
        for fund in sorted(set(expected_dues) | set(got_dues)):
            if got_dues.get(fund) != expected_dues.get(fund):
                mismatch(
                    "employer_dues", f"{where} {fund}", "amount", got_dues.get(fund), expected_dues.get(fund)
                )
        expected_careers: dict[str, int] = {}
        for line in view["lines"]:
            if line[5] > 0:
                expected_careers[line[0]] = expected_careers.get(line[0], 0) + line[5]
        got_careers = ledger_careers.get(month, {})
        for worker in sorted(set(expected_careers) | set(got_careers)):
            if got_careers.get(worker) != expected_careers.get(worker):
                mismatch(
                    "careers",
                    f"{where} {worker}",
                    "base",
                    got_careers.get(worker),
                    expected_careers.get(worker),
                )
    return {"months": len(periods), "dues": len(dues), "careers": len(careers), "mismatches": mismatches}
