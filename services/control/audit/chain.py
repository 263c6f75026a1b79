"""kalo_audit_chain_ok: whether the stored records still give the root of the latest signed
head. At each new head, the leaves of the records stored since the last check are hashed
again from their bytes and added to the frontier kept from the check before: each record is
read once, however long the log. (`kalo audit verify` checks everything, heads and proofs.)"""

from __future__ import annotations

import asyncpg

from services.control.audit.adapters import latest_head
from services.control.audit.merkle import Frontier, leaf_hash

CHUNK = 20_000


class ChainCheck:
    def __init__(self) -> None:
        self.frontier = Frontier()  # over the records checked so far
        self.checked_size = -1  # the size of the head checked last
        self.ok = True

    async def check(self, conn: asyncpg.Connection | asyncpg.Pool) -> bool | None:
        """Check the latest signed head if it is new; its result (None: nothing new)."""
        head = await latest_head(conn)
        if head is None or head.tree_size == self.checked_size:
            return None
        if self.ok:  # once broken, it stays broken: no later root can match again
            self.ok = await self._extend(conn, head.tree_size) and self.frontier.root() == head.root_hash
        self.checked_size = head.tree_size
        return self.ok

    async def _extend(self, conn: asyncpg.Connection | asyncpg.Pool, size: int) -> bool:
        """The frontier up to `size` records; False if a record is missing."""
        while self.frontier.size < size:
            rows = await conn.fetch(
                "SELECT seq, record FROM audit.records WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                self.frontier.size,
                min(size, self.frontier.size + CHUNK),
            )
            if not rows:
                return False
            for r in rows:
                if r["seq"] != self.frontier.size:  # a gap: a record was deleted
                    return False
                self.frontier.append(leaf_hash(bytes(r["record"])))
        return self.frontier.size == size
