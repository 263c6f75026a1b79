"""How a stream processor's batch keeps its partition flowing — one implementation for every
faust service's handler (no I/O here: the handler passes its ports' functions).

A batch is decoded message by message (what cannot be decoded is parked), then processed
together (one registry or career read for all). When processing fails as a whole other than
by an outage, the messages are processed one at a time and only the culprits are parked;
outputs sent twice carry the same ids, so every sink drops the duplicates. An outage of
PostgreSQL or Kafka is raised, for the caller to retry the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from services.common import logs
from services.common.outage import is_outage

log = logging.getLogger(__name__)
M = TypeVar("M")
D = TypeVar("D")
R = TypeVar("R")
Park = Callable[[M, BaseException], Awaitable[None]]


class OutputTooLarge(ValueError):
    """An output Kafka would refuse: its input is parked, the partition flows."""


class Output(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def value(self) -> bytes: ...


def check_sizes(outputs: Iterable[Output], limit: int) -> None:
    """OutputTooLarge for the first output over `limit` bytes (checked before any is sent)."""
    for out in outputs:
        if len(out.value) > limit:
            raise OutputTooLarge(f"{out.topic} message of {len(out.value):,} bytes exceeds {limit:,}")


async def decoded_or_parked(
    messages: Sequence[M], decode: Callable[[M], D], park: Park[M]
) -> list[tuple[M, D]]:
    """Each message with its decoded form; what cannot be decoded is parked."""
    decoded = []
    for message in messages:
        try:
            decoded.append((message, decode(message)))
        except Exception as exc:  # not readable: park it, keep the partition flowing
            await park(message, exc)
    return decoded


async def together_or_one_by_one(
    items: list[tuple[M, D]],
    process: Callable[[list[tuple[M, D]]], Awaitable[list[R]]],
    park: Park[M],
    *,
    what: str,
) -> list[R]:
    """`process(items)`; if it fails other than by an outage, each item alone, parking those
    that fail alone."""
    try:
        return await process(items)
    except Exception as exc:
        if is_outage(exc):
            raise
        log.warning("batch failed (%r); processing its %d %s one by one", exc, len(items), what)
    results: list[R] = []
    for item in items:
        with logs.handling(item[1]):  # the parking's line names the event
            try:
                results += await process([item])
            except Exception as single:
                if is_outage(single):
                    raise
                await park(item[0], single)
    return results
