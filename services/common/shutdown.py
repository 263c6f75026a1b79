"""How a tracked-consumer service stops: SIGTERM sets its `stopping` event (the batch being
written finishes, the group is left), a deadline ends the process if that hangs, and its
PostgreSQL pool and operations port are closed without waiting on a server that is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from typing import Any

import asyncpg

# Under docker's and supervise.sh's 10 s before SIGKILL: a stop that hangs ends cleanly first.
STOP_DEADLINE_S = 9.0


def arm_stop_deadline(name: str, stopping: asyncio.Event) -> None:
    """On the first stop request: exit the process if it is still running STOP_DEADLINE_S
    later (a daemon timer: a clean stop does not wait for it)."""
    if stopping.is_set():
        return

    def exit_now() -> None:
        print(
            f"{name}: not stopped {STOP_DEADLINE_S:.0f} s after SIGTERM; exiting", file=sys.stderr, flush=True
        )
        os._exit(0)

    timer = threading.Timer(STOP_DEADLINE_S, exit_now)
    timer.daemon = True
    timer.start()


async def close_pool(pool: asyncpg.Pool | None) -> None:
    """Close the pool within a second, or drop its connections (PostgreSQL may be away)."""
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), timeout=1)
    except Exception:
        pool.terminate()


async def close_ops(ops: Any) -> None:
    """Close the /metrics, /health, /ready server (an aiohttp runner) within a second."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ops.cleanup(), timeout=1)
