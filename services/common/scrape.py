"""A service's /metrics page read as Prometheus reads it: samples by name, sums, and the p99
of a histogram between two scrapes (what `kalo status --watch` shows)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

# name → [(labels, value)], for every sample of the page (histograms as _bucket/_count/_sum).
Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass(frozen=True)
class Scrape:
    """One service's page at one time; `samples` empty and `error` set when it did not answer."""

    at: float
    samples: Samples = field(default_factory=dict)
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.error is None

    def total(self, name: str, **labels: str) -> float | None:
        """The sum of a family's samples (with these labels), None when the page lacks it."""
        values = [v for lab, v in self.samples.get(name, ()) if _matches(lab, labels)]
        return sum(values) if values else None

    def buckets(self, name: str) -> dict[float, float]:
        """A histogram's cumulative counts by upper bound, summed over its other labels."""
        counts: dict[float, float] = {}
        for labels, value in self.samples.get(f"{name}_bucket", ()):
            bound = float(labels["le"])
            counts[bound] = counts.get(bound, 0.0) + value
        return counts


def _matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def parse(text: str, at: float) -> Scrape:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return Scrape(at, samples)


async def scrape(client: httpx.AsyncClient, url: str, at: float) -> Scrape:
    """The page at `url`; a service that does not answer (or answers an error) is down."""
    try:
        response = await client.get(url, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return Scrape(at, error=type(exc).__name__)
    return parse(response.text, at)


def quantile(
    q: float, now: Mapping[float, float], before: Mapping[float, float] | None = None
) -> float | None:
    """The q-quantile of the observations between two scrapes of a histogram's buckets (all
    of them without `before`), interpolated in its bucket as Prometheus' histogram_quantile
    does. None without observations; past the last finite bound, that bound (as Prometheus)."""
    bounds = sorted(now)
    counts = [now[b] - (before or {}).get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0 or any(c < 0 for c in counts):
        return None  # nothing observed, or the service restarted (its counters reset)
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return None


def rate(now: float | None, before: float | None, seconds: float) -> float | None:
    """Per second between two readings of a counter; None without both or across a reset."""
    if now is None or before is None or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds
