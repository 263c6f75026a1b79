"""Ops on the dead-letter topic: list what is parked, send one back to where it came from."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from contracts.audit import DeadLetter, audit_event
from contracts.envelope import Envelope
from services.common import kafka
from services.common.settings import Settings


async def read_dead_letters(settings: Settings) -> list[Envelope[DeadLetter]]:
    """Every dead letter, from the beginning of the topic to its current end."""
    name = kafka.topic("kalo.dlq", settings)
    partitions = [TopicPartition(name, p) for p in await kafka.partitions_of(name, settings)]
    if not partitions:
        return []
    consumer = kafka.consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        letters: list[Envelope[DeadLetter]] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for r in records:
                    letters.append(Envelope[DeadLetter].model_validate(orjson.loads(r.value)))
                    if r.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return letters
    finally:
        await consumer.stop()


def summary(letter: Envelope[DeadLetter]) -> dict[str, Any]:
    d = letter.data
    return {
        "id": str(letter.id),
        "at": letter.occurred_at.isoformat(),
        "service": d.service,
        "source": f"{d.topic}/{d.partition}/{d.offset}",
        "bytes": d.value_size if d.value_size is not None else len(base64.b64decode(d.value_b64)),
        "error": d.error,
    }


async def replay(settings: Settings, letter_id: str, actor: str = "cli") -> dict[str, Any]:
    """Produce the original bytes again to their original topic (after a fix was deployed),
    and record it on kalo.audit (`dlq.replayed`, by `actor`)."""
    [result] = await replay_many(settings, [letter_id], actor)
    return result


async def replay_many(
    settings: Settings,
    letter_ids: list[str],
    actor: str = "cli",
    on_progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """`replay` of several letters: the topic read once, one producer; every id is checked
    before any is sent (KeyError naming the unknown ones). `on_progress(sent, total)`."""
    letters = {str(letter.id): letter for letter in await read_dead_letters(settings)}
    unknown = [i for i in letter_ids if i not in letters]
    if unknown:
        raise KeyError(f"no dead letter with id {', '.join(unknown)}")
    # Each letter and its audit record in one Kafka transaction: both are read, or neither
    # (every consumer of Kalo's reads committed records only). A replay stopped between the
    # two leaves no record sent back without its `dlq.replayed`.
    # A replay killed inside its transaction holds the partition's readers back until the
    # broker aborts it: 10 s, not aiokafka's 60 s (two sends take milliseconds).
    producer = kafka.producer(
        settings, transactional_id=f"kalo-dlq-replay-{uuid.uuid4()}", transaction_timeout_ms=10_000
    )
    await producer.start()
    try:
        results = []
        for letter_id in letter_ids:
            letter = letters[letter_id]
            value = await _original(settings, letter.data)  # before the transaction: it may read
            async with producer.transaction():
                results.append(await _send_back(settings, producer, letter, value, actor))
            if on_progress is not None:
                on_progress(len(results), len(letter_ids))
        return results
    finally:
        await producer.stop()


async def _original(settings: Settings, d: DeadLetter) -> bytes:
    """The letter's original bytes: carried whole, or read back from their position."""
    return await _read_source(settings, d) if d.value_truncated else base64.b64decode(d.value_b64)


async def _send_back(
    settings: Settings, producer: AIOKafkaProducer, letter: Envelope[DeadLetter], value: bytes, actor: str
) -> dict[str, Any]:
    d = letter.data
    meta = await producer.send_and_wait(
        d.topic, value, key=base64.b64decode(d.key_b64) if d.key_b64 else None
    )
    position = f"{d.topic}/{d.partition}/{d.offset}"
    _, audit = audit_event(
        action="dlq.replayed",
        subject=position,
        actor=actor,
        input_bytes=value,
        output_bytes=value,
        producer="cli",
        causation_id=letter.id,
        event_id=uuid.uuid4(),  # each replay is a decision of its own
        details={
            "letter_id": str(letter.id),
            "service": d.service,
            "to": f"{d.topic}/{meta.partition}/{meta.offset}",
        },
    )
    await producer.send_and_wait(kafka.topic("kalo.audit", settings), audit, key=position.encode())
    return {"id": str(letter.id), "topic": d.topic, "partition": meta.partition, "offset": meta.offset}


async def _read_source(settings: Settings, d: DeadLetter) -> bytes:
    """The whole original of a letter that carries only its beginning, from its position."""
    consumer = kafka.consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        tp = TopicPartition(d.topic, d.partition)
        consumer.assign([tp])
        consumer.seek(tp, d.offset)
        record = await asyncio.wait_for(consumer.getone(tp), timeout=30)
    finally:
        await consumer.stop()
    value = record.value or b""
    if record.offset != d.offset or hashlib.sha256(value).hexdigest() != d.value_sha256:
        raise KeyError(f"the original of this letter is no longer at {d.topic}/{d.partition}/{d.offset}")
    return value
