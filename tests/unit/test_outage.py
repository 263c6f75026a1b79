"""Outage or bad data: what a service waits out (retries) and what it sets aside (DLQ)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiokafka import errors as kafka_errors

from services.common.outage import Backoff, is_outage, retry_outages


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(),
        OSError("Multiple exceptions: [Errno 111] Connect call failed"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CrashShutdownError("crash"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        kafka_errors.KafkaConnectionError("Unable to bootstrap"),
        kafka_errors.NodeNotReadyError(),
        kafka_errors.RequestTimedOutError(),
        kafka_errors.NotLeaderForPartitionError(),
        kafka_errors.KafkaTimeoutError(),
    ],
)
def test_outages(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
        asyncpg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.DataError("invalid input"),
        asyncpg.exceptions.QueryCanceledError("statement timeout"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ValueError("A string literal cannot contain NUL (0x00) characters."),
        KeyError("employer_id"),
        FileNotFoundError("x"),
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.UnsupportedVersionError(),
    ],
)
def test_not_outages(exc: BaseException) -> None:
    assert not is_outage(exc)


def test_a_chained_outage_is_an_outage() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("registry lookup failed") from inner
    except RuntimeError as outer:
        assert is_outage(outer)
    assert is_outage(ExceptionGroup("g", [TimeoutError(), ConnectionResetError()]))
    assert not is_outage(ExceptionGroup("g", [TimeoutError(), ValueError()]))


def test_backoff_is_capped_exponential_with_jitter() -> None:
    b = Backoff(base=0.1, cap=1.0)
    delays = [b.next_delay() for _ in range(12)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert all(0.5 <= d <= 1.0 for d in delays[5:])
    b.reset()
    assert b.next_delay() <= 0.1


async def test_retry_outages_waits_out_outages_only() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError(111, "refused")
        return "ok"

    assert await retry_outages(flaky, what="t", backoff=Backoff(0.001, 0.002)) == "ok"
    assert calls == 3

    async def bad() -> None:
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        await retry_outages(bad, what="t", backoff=Backoff(0.001, 0.002))


async def test_retry_outages_gives_up_when_stopped() -> None:
    stop = asyncio.Event()

    async def away() -> None:
        stop.set()  # SIGTERM arrives while PostgreSQL is away
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(retry_outages(away, what="t", stop=stop, backoff=Backoff(10, 10)), 1)


def test_a_connection_left_busy_by_a_cancelled_query_is_an_outage() -> None:
    from asyncpg.exceptions._base import InternalClientError

    busy = InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    assert is_outage(busy)
    assert not is_outage(InternalClientError("something else"))
