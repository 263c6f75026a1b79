"""What a PromQL query reads, taken apart with Prometheus' grammar (promql-parser, a port of
Prometheus' own parser: unknown functions and wrong argument types are refused), and the
metric families the services export (deploy/prometheus/exported_metrics.yml), for the tests
of the alert rules and of the Grafana dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy/prometheus"
TARGET_LABELS = ("job", "instance")  # added by Prometheus to every scraped series


@dataclass(frozen=True)
class Series:
    """A series name as a query writes it, and what it may be matched on."""

    name: str
    family: str
    type: str  # counter, gauge, histogram
    jobs: frozenset[str]  # empty: every job's (up, process_*)
    labels: frozenset[str]

    @property
    def cumulative(self) -> bool:
        """Only meaningful through rate() or increase(): a counter, a histogram's part."""
        return self.type in ("counter", "histogram")


def _series(family: str, spec: dict[str, Any], jobs: frozenset[str]) -> list[Series]:
    labels = frozenset(spec["labels"]) | set(TARGET_LABELS)
    if spec["type"] != "histogram":
        return [Series(family, family, spec["type"], jobs, labels)]
    return [
        Series(family + "_bucket", family, "histogram", jobs, labels | {"le"}),
        Series(family + "_sum", family, "histogram", jobs, labels),
        Series(family + "_count", family, "histogram", jobs, labels),
    ]


@cache
def exported() -> dict[str, Series]:
    """Every series name a Kalo scrape job exports, by name."""
    spec = yaml.safe_load((PROMETHEUS / "exported_metrics.yml").read_text())
    out: dict[str, Series] = {}
    for family, fam in spec["every_job"].items():
        out.update((s.name, s) for s in _series(family, fam, frozenset()))
    for job, families in spec["jobs"].items():
        for family, fam in families.items():
            out.update((s.name, s) for s in _series(family, fam, frozenset({job})))
    return out


def scrape_jobs() -> set[str]:
    return set(yaml.safe_load((PROMETHEUS / "exported_metrics.yml").read_text())["jobs"])


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value), op one of = != =~ !~

    def values(self, label: str, op: str) -> list[str]:
        """What `label` is matched against with `op`."""
        return [value for name, o, value in self.matchers if name == label and o == op]


@dataclass
class Query:
    """The parts of one parsed query that the tests look at."""

    selectors: list[Selector] = field(default_factory=list)  # every series selector
    ranged: list[str] = field(default_factory=list)  # names read through a range [..]
    ranges: list[timedelta] = field(default_factory=list)  # of range selectors and subqueries
    grouping: set[str] = field(default_factory=set)  # labels of by/without, on/ignoring, group_*


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}  # by promql_parser.MatchOp's name


def parse(expr: str) -> Query:
    """Parse `expr` (ValueError if Prometheus would refuse it) and collect its parts."""
    query = Query()

    def visit(node: Any) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            matchers = tuple(
                (m.name, _OPS[str(m.op).rpartition(".")[2]], m.value) for m in node.matchers.matchers
            )
            query.selectors.append(Selector(node.name or "", matchers))
        elif kind == "MatrixSelector":
            query.ranged.append(node.vector_selector.name or "")
            query.ranges.append(node.range)
        elif kind == "SubqueryExpr":
            query.ranges.append(node.range)
        elif kind == "AggregateExpr" and node.modifier is not None:
            query.grouping.update(node.modifier.labels)
        elif kind == "BinaryExpr" and node.modifier is not None:
            if node.modifier.matching is not None:
                query.grouping.update(node.modifier.matching.labels)
            query.grouping.update(node.modifier.group_labels or ())

    promql_parser.walk(promql_parser.parse(expr), visit)
    return query


def unknown_names(query: Query, known: set[str]) -> set[str]:
    return {s.name for s in query.selectors} - known


def unknown_labels(query: Query, recorded: dict[str, set[str]] | None = None) -> set[str]:
    """Labels a selector matches on, or the query groups by, that none of its series has."""
    series = exported()
    recorded = recorded or {}
    every: set[str] = set()
    bad: set[str] = set()
    for selector in query.selectors:
        labels = (
            series[selector.name].labels if selector.name in series else recorded.get(selector.name, set())
        )
        every |= labels
        bad |= {name for name, _, _ in selector.matchers if name not in labels}
    return bad | (query.grouping - every)
