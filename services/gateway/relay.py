"""The gateway's outbox relay: publishes the receipts' messages (services/common/outbox.py).

A receipted declaration is never lost and is published once: a row is marked published
only after Kafka acknowledged it, and whoever takes the relay over (one leader per database,
by an advisory lock) first reads the topic back and marks the rows already there. The
message id is deterministic per declaration, so any consumer drops a duplicate.
"""

from __future__ import annotations

import asyncpg
from aiokafka import AIOKafkaProducer

from services.common import outbox as common
from services.common.db import connect
from services.common.settings import Settings
from services.gateway.metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED

# pg_try_advisory_lock key of the relay leader (advisory locks are per database).
RELAY_LOCK = 7_206_004
OUTBOX = common.Outbox(
    table="outbox",
    lock=RELAY_LOCK,
    name="outbox relay",
    on_published=OUTBOX_PUBLISHED.inc,
    on_pending=OUTBOX_PENDING.set,
)


async def publish_pending(pool: asyncpg.Pool, producer: AIOKafkaProducer, batch: int = 200) -> int:
    """Publish one batch of pending outbox rows; returns how many were published."""
    return await common.publish_pending(pool, producer, OUTBOX, batch)


async def reconcile(pool: asyncpg.Pool, settings: Settings) -> int:
    """Mark the pending rows already on their topic as published; returns how many."""
    return await common.reconcile(pool, settings, OUTBOX)


class Relay(common.Relay):
    def __init__(self, pool: asyncpg.Pool, settings: Settings, poll_s: float = 0.5):
        # The leader's lock on a connection of the gateway's own role.
        super().__init__(pool, settings, OUTBOX, poll_s, connect=lambda: connect("gateway", settings))
