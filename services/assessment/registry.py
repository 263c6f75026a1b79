"""What the assessment reads from the registries in PostgreSQL: employers and known workers.

Employers are cached for a short time (they rarely change); a miss is asked again every
time, so an employer registered a second ago is found.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class EmployerRecord:
    id: str
    regime: str
    risk_class: int | None
    filing: str
    active: bool


class Registry:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float = 30.0) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self._employers: dict[str, tuple[float, EmployerRecord]] = {}

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
        if not worker_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT worker_id FROM workers WHERE worker_id = ANY($1::text[])", worker_ids
        )
        return {r["worker_id"] for r in rows}
