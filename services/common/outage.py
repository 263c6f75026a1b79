"""Outages versus bad data: what a service waits out, and what it sets aside.

An *outage* is PostgreSQL or Kafka being away for a while (restarting, unreachable, out of
connections): the same work succeeds later, so a service pauses, backs off and retries,
and the gateway answers 503 with `Retry-After`. Anything else (a record PostgreSQL refuses,
a bug) is about the message itself: retrying cannot help, so the message goes to the DLQ
and the others flow.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka import errors as kafka_errors

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATE classes and codes of a server that is away or overwhelmed for a while:
# 08 connection exception, 53 insufficient resources (too many connections, disk full,
# out of memory), 58 system error (I/O), 40 transaction rollback (serialization failure,
# deadlock: the same transaction succeeds when retried), 57P01-03 admin/crash shutdown,
# cannot connect now (starting up, shutting down, recovering).
_PG_CLASSES = ("08", "53", "58", "40")
_PG_CODES = ("57P01", "57P02", "57P03")
# Kafka errors that are not marked retriable but mean "the cluster did not answer in time".
_KAFKA_OUTAGES = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.RequestTimedOutError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RebalanceInProgressError,
)
_CLOSED = ("connection is closed", "connection was closed", "pool is closing", "pool is closed")


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means PostgreSQL or Kafka is away (retry later), False for an error
    of the data or of the code (retrying the same thing fails the same way)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # `raise … from outage` counts too
        seen.add(id(current))
        if _is_outage(current):
            return True
        current = current.__cause__
    return False


def what_is_away(exc: BaseException) -> str:
    """ "Kafka", "PostgreSQL", or both names when the error does not say which (a refused
    connection of either)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # The error's own type, else the code it was raised in (a refused connection is a
        # ConnectionRefusedError from either client).
        modules = [type(current).__module__]
        tb = current.__traceback__
        while tb is not None:
            modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
            tb = tb.tb_next
        for module in reversed(modules):  # the innermost frame first
            if module.startswith(("aiokafka", "kafka")):
                return "Kafka"
            if module.startswith("asyncpg"):
                return "PostgreSQL"
        current = current.__cause__ or current.__context__
    return "PostgreSQL or Kafka"


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return bool(exc.exceptions) and all(is_outage(e) for e in exc.exceptions)
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):  # refused, reset, timed out
        return True
    if type(exc) is OSError:  # "Multiple exceptions: [Errno 111] …" (every address refused), EHOSTUNREACH
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _PG_CLASSES or state in _PG_CODES
    if isinstance(exc, asyncpg.exceptions._base.InternalClientError):
        # "another operation is in progress": a connection left busy by a cancelled query
        # (a PostgreSQL restart, a client gone); the pool closes it, the retry gets another.
        return "in progress" in str(exc)
    if isinstance(exc, asyncpg.InterfaceError):
        return any(text in str(exc).lower() for text in _CLOSED)
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(exc, _KAFKA_OUTAGES)
    return False


class Backoff:
    """Capped exponential backoff with jitter: base, 2·base, 4·base … up to `cap`, each
    delay drawn in [d/2, d] so that restarted clients do not knock in step."""

    def __init__(self, base: float = 0.2, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2 ** min(self.attempts, 30))
        self.attempts += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self, stop: asyncio.Event | None = None) -> bool:
        """Wait the next delay; returns False at once if `stop` is (or becomes) set."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return True
        if stop.is_set():
            return False
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            return True
        return False


async def retry_outages(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event | None = None,
    backoff: Backoff | None = None,
    logger: logging.Logger | None = None,
) -> T:
    """Run `action` until it succeeds, waiting out outages (logged once, then every tenth
    try). Any other error is raised at once; an outage is raised when `stop` is set."""
    backoff = backoff or Backoff()
    logger = logger or log
    failures = 0
    while True:
        try:
            result = await action()
        except Exception as exc:
            if not is_outage(exc):
                raise
            failures += 1
            if failures == 1 or failures % 10 == 0:
                logger.warning("%s: waiting for PostgreSQL/Kafka (%d tries): %r", what, failures, exc)
            if not await backoff.sleep(stop):
                raise
            continue
        if failures:
            logger.warning("%s: resumed after %d tries", what, failures)
        return result
