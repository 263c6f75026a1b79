"""The assessment's ports on PostgreSQL and Kafka: the registries it reads, the sender of its
outputs, its dead letters.

Employers are cached for a short time (they rarely change); a miss is asked again every
time, so an employer registered a second ago is found. Known workers are remembered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import asyncpg

from services.assessment.handlers import EmployerRecord
from services.assessment.metrics import STREAM
from services.common import outputs
from services.common.outputs import KafkaSender

__all__ = ["SERVICE", "KafkaDeadLetters", "KafkaSender", "PgRegistry"]

log = logging.getLogger(__name__)
SERVICE = "assessment"


class PgRegistry:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 30.0) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._employers: dict[str, tuple[float, EmployerRecord]] = {}
        self._workers: set[str] = set()
        self.max_cached_workers = 2_000_000  # a country's insured workers, ~100 MB at most

    async def employers(self, ids: Iterable[str]) -> dict[str, EmployerRecord]:
        now = time.monotonic()
        found: dict[str, EmployerRecord] = {}
        missing = []
        for employer_id in set(ids):
            cached = self._employers.get(employer_id)
            if cached and now - cached[0] < self.ttl_s:
                found[employer_id] = cached[1]
            else:
                missing.append(employer_id)
        if missing:
            rows = await self.pool.fetch(
                "SELECT id, regime, risk_class, filing, active FROM employers WHERE id = ANY($1::text[])",
                missing,
            )
            for r in rows:
                record = EmployerRecord(r["id"], r["regime"], r["risk_class"], r["filing"], r["active"])
                self._employers[record.id] = (now, record)
                found[record.id] = record
        return found

    async def known_workers(self, worker_ids: list[str]) -> set[str]:
        """Which of these workers the registry knows. Once known a worker stays known, so
        those are remembered; the rest are asked in one round trip."""
        known = {w for w in worker_ids if w in self._workers}
        ask = [w for w in worker_ids if w not in self._workers]
        if any("\n" in w for w in ask):  # cannot be joined: ask element by element
            rows = await self.pool.fetch(
                "SELECT worker_id FROM workers WHERE worker_id = ANY($1::text[])", ask
            )
            return known | {r["worker_id"] for r in rows}
        if ask:
            # One newline-joined text instead of a text[]: a month is 400,000 ids, and
            # encoding them element by element costs more than the lookup.
            found = await self.pool.fetchval(
                "SELECT string_agg(worker_id, E'\\n') FROM workers"
                " WHERE worker_id = ANY(string_to_array($1, E'\\n'))",
                "\n".join(ask),
            )
            if found:
                fresh = found.split("\n")
                known.update(fresh)
                if len(self._workers) > self.max_cached_workers:
                    self._workers.clear()
                self._workers.update(fresh)
        return known


class KafkaDeadLetters(outputs.KafkaDeadLetters):
    def __init__(self, sender: KafkaSender) -> None:
        super().__init__(sender, SERVICE, STREAM)
