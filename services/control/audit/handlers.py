"""The audit store's decisions: which events become which records, and when a head is signed.

`AuditLog` keeps the tree's right edge (`Frontier`) in memory and works through a port,
`LogTx`: the transaction the store writes in (PostgreSQL in `adapters.PgLogTx`, a list in
the unit tests). Every call first takes the writer's lock and compares the committed size
with its own: a batch that was not committed (an outage, a second writer) makes it reload.

- `append`: drops events already in the log (idempotent by event id, also within a batch),
  numbers the others from the current size, and signs a head each time
  `every_records` records were added since the last one.
- `tick`: signs a head when records are waiting and `every_s` seconds passed since the last.
- `load`: reads the leaf hashes back and refuses to go on (`TamperedLog`) when the latest
  signed head no longer matches them: the store never signs over an altered log.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.control.audit.heads import SignedHead, Signer
from services.control.audit.merkle import Frontier, leaf_hash
from services.control.audit.records import Entry

log = logging.getLogger(__name__)


class TamperedLog(RuntimeError):
    """The records no longer match the latest signed head."""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    entry: Entry
    leaf_hash: bytes


class LogTx(Protocol):
    """The store within one transaction."""

    async def lock(self) -> int:
        """Take the writer's lock (until the transaction ends); the number of records."""
        ...

    async def known(self, event_ids: list[uuid.UUID]) -> set[uuid.UUID]: ...

    async def append(self, rows: Sequence[Row]) -> None: ...

    async def add_head(self, head: SignedHead) -> None: ...

    async def last_head(self) -> SignedHead | None: ...

    def leaf_hashes(self) -> AsyncIterator[bytes]:
        """Every leaf hash, in order."""
        ...


class AuditLog:
    def __init__(self, signer: Signer, *, every_records: int, every_s: float) -> None:
        self.signer = signer
        self.every_records = max(1, every_records)
        self.every_ms = int(every_s * 1000)
        self.frontier = Frontier()
        self.head_size = 0  # size and time of the latest signed head
        self.head_ms = 0
        self.loaded = False

    async def load(self, tx: LogTx) -> None:
        """Read the tree back from the store and check it against the latest signed head."""
        head = await tx.last_head()
        frontier = Frontier()
        head_root = frontier.root() if head is not None and head.tree_size == 0 else None
        async for leaf in tx.leaf_hashes():
            frontier.append(leaf)
            if head is not None and frontier.size == head.tree_size:
                head_root = frontier.root()
        if head is not None and head_root != head.root_hash:  # None: fewer records than signed
            raise TamperedLog(
                f"the audit log no longer matches its head of size {head.tree_size} signed at "
                f"{head.time} ({frontier.size} records): run `kalo audit verify`"
            )
        self.frontier = frontier
        self.head_size = head.tree_size if head else 0
        self.head_ms = head.timestamp_ms if head else 0
        self.loaded = True
        log.info("audit log loaded: %d records, latest head %d", frontier.size, self.head_size)

    async def _locked(self, tx: LogTx) -> None:
        size = await tx.lock()
        if not self.loaded or size != self.frontier.size:
            await self.load(tx)

    async def append(self, tx: LogTx, entries: Sequence[Entry], now_ms: int) -> list[SignedHead]:
        """Append the events not yet in the log; the heads signed on the way."""
        await self._locked(tx)
        unique: dict[uuid.UUID, Entry] = {}
        for e in entries:
            unique.setdefault(e.event_id, e)
        if not unique:
            return []
        known = await tx.known(list(unique))
        frontier = self.frontier.copy()
        head_size, head_ms = self.head_size, self.head_ms
        rows: list[Row] = []
        heads: list[SignedHead] = []
        for e in unique.values():
            if e.event_id in known:
                continue
            leaf = leaf_hash(e.record)
            rows.append(Row(frontier.size, e, leaf))
            frontier.append(leaf)
            if frontier.size - head_size >= self.every_records:
                head = self._sign(frontier, head_size, head_ms, now_ms)
                heads.append(head)
                head_size, head_ms = head.tree_size, head.timestamp_ms
        if rows:
            await tx.append(rows)
        for head in heads:
            await tx.add_head(head)
        # Only now (every write accepted): the state moves. A transaction that does not
        # commit after all is noticed at the next lock (sizes differ) and reloaded.
        self.frontier, self.head_size, self.head_ms = frontier, head_size, head_ms
        return heads

    async def tick(self, tx: LogTx, now_ms: int, *, force: bool = False) -> SignedHead | None:
        """Sign a head if records wait for one and `every_s` passed (or `force`, at stop)."""
        await self._locked(tx)
        if self.head_ms and self.frontier.size == self.head_size:
            return None  # nothing new since the latest head
        if not force and self.head_ms and now_ms - self.head_ms < self.every_ms:
            return None
        head = self._sign(self.frontier, self.head_size, self.head_ms, now_ms)
        await tx.add_head(head)
        self.head_size, self.head_ms = head.tree_size, head.timestamp_ms
        return head

    def _sign(self, frontier: Frontier, previous_size: int, previous_ms: int, now_ms: int) -> SignedHead:
        # Heads never go back in time, even if the clock does.
        return self.signer.sign(
            frontier.size, frontier.root(), max(now_ms, previous_ms), first_index=previous_size
        )
