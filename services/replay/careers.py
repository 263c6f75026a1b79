"""Careers re-derived from the career topics, as the ledger had them at a liquidation's point.

A liquidation carries the career it was computed from and the point it was read at
(`as_of.ledger_offsets`: per career topic and partition, the next offset the ledger had
applied). Replaying the career topics from their beginning up to those offsets, with the
ledger's rules (services/ledger/projections.py), gives back the rows the liquidation read;
`services.liquidation.handlers.merge_career` (the liquidation's own function) makes them the
career. The ledger's rules, for the rows of one worker:

- assessed: per (employer, period) the declaration with the greatest `submitted_at` is in force,
  a tie to the later one; taking a month over replaces that month's rows (a worker absent from
  the corrective loses it); a row per line whose pension base (line[5]) is > 0; a declaration id
  is applied once (the ledger's outcomes);
- imported: per (worker, period, employer) an import replaces the row when its base differs and
  the stored `imported_at` is not later; within one event the last entry wins; an event id is
  applied once.

The ledger applies imports in batches (within a batch the later event wins, before that rule);
the topics do not say where its batches ended, so each event counts as a batch of its own. The
two differ only when a later event of one worker carries an older `imported_at`.

State is kept only for the workers asked about, plus the in-force declaration of every
(employer, period): memory grows with those, not with the topics.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from pydantic import TypeAdapter, ValidationError

from contracts.envelope import Envelope
from contracts.pensions import CareerAsOf, CareerImported
from services.liquidation.handlers import Career, CareerRows, Rows, merge_career
from services.replay.layout import LINES_BYTES, split_lines

# The topics the ledger writes careers from (services/ledger/app.py's CAREER_TOPICS).
ASSESSED = "kalo.declarations.assessed"
IMPORTED = "kalo.careers.imported"
CAREER_TOPICS = (ASSESSED, IMPORTED)
# The line fields read (contracts.declarations.ASSESSED_LINE_FIELDS): worker_id, pension_base.
_WORKER, _PENSION_BASE = 0, 5

Partition = tuple[str, int]  # (registry name, partition)
Record = tuple[str, bytes | None, bytes]  # (registry name, key, value)

_INSTANT: TypeAdapter[datetime] = TypeAdapter(datetime)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_IMPORT = Envelope[CareerImported]
# The worker id opening each line array, escapes included (a quote cannot appear unescaped
# inside a JSON string, so `["` starts an array of which a string is the first element).
_LINE_START = re.compile(rb'\[\s*"((?:[^"\\]|\\.)*)"')


def _instant(value: Any) -> datetime:
    """A time as PostgreSQL's timestamptz reads it (one without an offset is UTC)."""
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(value)  # C: a tenth of pydantic's time
        except (TypeError, ValueError):
            at = _INSTANT.validate_python(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _microseconds(value: Any) -> int:
    """A time as microseconds since 1970 (timestamptz's precision): an int is a third of a
    datetime's memory, and there is one per employer-month of the topics' history."""
    return (_instant(value) - _EPOCH) // _MICROSECOND


class CareerLedger:
    """The ledger's career rows of some workers, built event by event from the career topics."""

    def __init__(self, workers: Iterable[str]) -> None:
        self.workers = set(workers)
        # Their ids as they appear between the quotes of a JSON string (orjson's encoding).
        self._encoded = {orjson.dumps(w)[1:-1] for w in self.workers}
        self._keys = {w.encode() for w in self.workers}
        # employer → period → submitted_at (µs) of the declaration in force: nested, and the
        # periods interned, a national month's 58,000 employer-months take ~100 bytes each.
        self.in_force: dict[str, dict[str, int]] = {}
        self.declarations: set[str] = set()  # ids applied: a declaration counts once
        self.assessed: dict[str, dict[tuple[str, str], int]] = {}  # worker → (period, employer) → base
        self.holders: dict[tuple[str, str], set[str]] = {}  # (employer, period) → workers with a row
        # worker → (period, employer) → (base, imported_at)
        self.imported: dict[str, dict[tuple[str, str], tuple[int, datetime]]] = {}
        self.import_events: set[str] = set()  # of these workers
        self.unreadable = 0  # events the ledger could not have applied either (it parks them)

    def apply(self, topic: str, key: bytes | None, value: bytes) -> None:
        try:
            if topic == ASSESSED:
                self.apply_assessed(value)
            elif topic == IMPORTED:
                self.apply_imported(key, value)
        except (ValueError, TypeError, KeyError, IndexError, ValidationError):
            self.unreadable += 1

    def apply_assessed(self, raw: bytes) -> None:
        doc = split_lines(raw)
        if doc.get("type") != "declaration.assessed":
            raise ValueError("not an assessed declaration")
        data = doc["data"]
        declaration_id = str(data["declaration_id"])
        if declaration_id in self.declarations:
            return  # redelivered: the ledger's outcome is written once
        employer, period = str(data["employer_id"]), sys.intern(str(data["period"]))
        month = (employer, period)
        submitted_at = _microseconds(data["submitted_at"])
        periods = self.in_force.get(employer)
        held = periods.get(period) if periods is not None else None
        # Read before anything changes: an event the ledger could not decode changed nothing.
        rows = self._rows(data) if held is None or held <= submitted_at else None
        self.declarations.add(declaration_id)
        if rows is None:
            return  # older than the declaration in force
        self.in_force.setdefault(employer, {})[period] = submitted_at
        for worker in self.holders.pop(month, ()):  # the month taken over: its rows replaced
            del self.assessed[worker][(period, employer)]
        for worker, base in rows:
            self.assessed.setdefault(worker, {})[(period, employer)] = base
            self.holders.setdefault(month, set()).add(worker)

    def _rows(self, data: dict[str, Any]) -> list[tuple[str, int]]:
        """(worker, pension base) of the lines of these workers with a base > 0. The lines are
        parsed only when one of them may be there: most declarations hold none of them."""
        lines: Any = data.get("lines")
        raw = data.get(LINES_BYTES)
        if raw is not None:
            ids = _LINE_START.findall(raw)
            if self._encoded.isdisjoint(ids) and not (b"\\" in raw and any(map(self._escaped, ids))):
                return []
            lines = orjson.loads(raw)
        if type(lines) is not list:
            raise ValueError("data.lines must be an array")
        return [
            (line[_WORKER], line[_PENSION_BASE])
            for line in lines
            if line[_WORKER] in self.workers and line[_PENSION_BASE] > 0
        ]

    def _escaped(self, encoded: bytes) -> bool:
        """An id written with escapes (`\\u00e9` for `é`) is one of these workers."""
        return b"\\" in encoded and orjson.loads(b'"' + encoded + b'"') in self.workers

    def apply_imported(self, key: bytes | None, raw: bytes) -> None:
        # Keyed by worker: another worker's event is not even parsed. (An event keyed otherwise
        # than by its worker is missed here: the career then differs, and that is reported.)
        if key is not None and key not in self._keys:
            return
        event = _IMPORT.model_validate_json(raw)
        if event.type != CareerImported.TYPE:
            # The ledger decodes by type, whatever the topic; an event of another type here
            # is a forgery whose rows (if the ledger took them) the replay lacks: reported.
            raise ValueError(f"not a career import: {event.type}")
        d = event.data
        if d.worker_id not in self.workers:
            return
        event_id = str(event.id)
        if event_id in self.import_events:
            return  # redelivered
        self.import_events.add(event_id)
        at = _instant(d.imported_at)
        entries = {(period, employer): base for period, employer, base in d.entries}  # the last wins
        rows = self.imported.setdefault(d.worker_id, {})
        for where, base in entries.items():
            stored = rows.get(where)
            if stored is None or (stored[0] != base and stored[1] <= at):
                rows[where] = (base, at)

    def career(self, worker: str) -> Career:
        """The worker's career as the liquidation merges it from these rows."""
        assessed, imported = self.assessed.get(worker, {}), self.imported.get(worker, {})
        return merge_career(CareerRows(_columns(assessed), _columns(imported)))


def _columns(rows: Mapping[tuple[str, str], int | tuple[int, datetime]]) -> Rows:
    periods = [p for p, _ in rows]
    employers = [e for _, e in rows]
    bases = [v if isinstance(v, int) else v[0] for v in rows.values()]
    return Rows(periods, employers, bases)


@dataclass(frozen=True)
class Wanted:
    """One liquidation's career to re-derive: whose, and up to which offsets."""

    event_id: str
    worker_id: str
    offsets: dict[Partition, int]


def wanted_of(doc: dict[str, Any]) -> Wanted | str:
    """What a `pension.liquidated` event asks to re-derive, or why it cannot be."""
    data = doc.get("data") or {}
    if data.get("as_of") is None:
        return "no as_of: the point its career was read at is not recorded"
    try:
        as_of = CareerAsOf.model_validate(data["as_of"])
        offsets = {
            (name, int(p)): next_offset
            for name, partitions in as_of.ledger_offsets.items()
            if name in CAREER_TOPICS
            for p, next_offset in partitions.items()
        }
    except (ValidationError, ValueError):
        return "as_of is not a CareerAsOf"
    return Wanted(str(doc["id"]), str(data["worker_id"]), offsets)


def compare(data: dict[str, Any], career: Career) -> list[tuple[str, Any, Any]]:
    """(field, recorded, re-derived) of every difference between a liquidation's snapshot and
    the career re-derived for it."""
    out: list[tuple[str, Any, Any]] = []
    recorded = data.get("career") or []
    rederived = [[p, b] for p, b in career.months]
    for i, (was, now) in enumerate(zip(recorded, rederived, strict=False)):
        if _listed(was) != now:
            out.append((f"career[{i}]", _listed(was), now))
    if len(recorded) != len(rederived):
        out.append(("career.length", len(recorded), len(rederived)))
    sources = data.get("career_sources")
    # Absent from liquidations made before it was carried: nothing recorded to compare.
    if sources is not None and [list(s) for s in sources] != [list(s) for s in career.sources]:
        out.append(("career_sources", sources, [list(s) for s in career.sources]))
    as_of = data.get("as_of") or {}
    for name, now_rows in (("assessed_rows", career.assessed_rows), ("imported_rows", career.imported_rows)):
        if as_of.get(name) != now_rows:
            out.append((f"as_of.{name}", as_of.get(name), now_rows))
    return out


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def passes(wanted: Sequence[Wanted]) -> list[list[Wanted]]:
    """The liquidations in passes over the topics, each pass in an order where every snapshot's
    offsets are at least the previous one's on every partition. Successive snapshots' offsets
    only grow (the ledger's do), so one pass is the rule; one taken behind another (a ledger
    rebuilt meanwhile) waits for a pass of its own rather than for the topics to be re-read."""
    left = sorted(wanted, key=lambda w: sum(w.offsets.values()))
    out: list[list[Wanted]] = []
    while left:
        at: dict[Partition, int] = {}
        this: list[Wanted] = []
        later: list[Wanted] = []
        for w in left:
            if all(w.offsets.get(tp, 0) >= n for tp, n in at.items()):
                this.append(w)
                at = {**at, **w.offsets}
            else:
                later.append(w)
        out.append(this)
        left = later
    return out


class Reader(Protocol):
    """The career topics read forward once from their beginning."""

    def problem(self, offsets: Mapping[Partition, int]) -> str | None:
        """Why the topics cannot be read up to these offsets (trimmed, or not that long)."""
        ...

    def upto(self, offsets: Mapping[Partition, int]) -> AsyncIterator[list[Record]]:
        """The records before these offsets not read yet, batch by batch."""
        ...


@dataclass
class Rederived:
    careers: dict[str, Career] = field(default_factory=dict)  # by liquidation event id
    problems: dict[str, str] = field(default_factory=dict)  # by liquidation event id: why not
    passes: int = 0
    records: int = 0  # career events read (across passes)
    unreadable: int = 0


async def careers_as_of(
    wanted: Sequence[Wanted],
    open_reader: Callable[[], AbstractAsyncContextManager[Reader]],
    on_progress: Callable[[int, int], None] | None = None,
) -> Rederived:
    """Each liquidation's career at its offsets, in as few passes over the topics as their
    order allows (one, normally): the rows of one pass's workers only. `on_progress` gets the
    career events read and about how many there are to read."""
    out = Rederived()
    furthest: dict[Partition, int] = {}
    for w in wanted:
        for tp, n in w.offsets.items():
            furthest[tp] = max(n, furthest.get(tp, 0))
    total = sum(furthest.values())
    for batch in passes(wanted):
        ledger = CareerLedger(w.worker_id for w in batch)
        out.passes += 1
        async with open_reader() as reader:
            for w in batch:
                problem = reader.problem(w.offsets)
                if problem is not None:
                    out.problems[w.event_id] = problem
                    continue
                async for records in reader.upto(w.offsets):
                    out.records += len(records)
                    for topic, key, value in records:
                        ledger.apply(topic, key, value)
                    if on_progress:
                        on_progress(out.records, max(total, out.records))
                out.careers[w.event_id] = ledger.career(w.worker_id)
        out.unreadable += ledger.unreadable
    return out
