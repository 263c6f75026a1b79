"""The outputs of a stream processor's batch on Kafka: sent as record batches per partition,
and its dead letters through the same sender (one implementation for every faust service)."""

from __future__ import annotations

from typing import Protocol

from aiokafka import AIOKafkaProducer

from services.common.dlq import park
from services.common.kafka import BatchSender, topic
from services.common.metrics import StreamMetrics
from services.common.settings import Settings


class Consumed(Protocol):
    """Where a consumed message was, and its bytes."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...


class KafkaSender:
    """The outputs of a batch as record batches per partition, topic names with the prefix."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.batch = BatchSender(producer)
        self.settings = settings

    async def send(self, registry_name: str, key: str, value: bytes) -> None:
        await self.batch.send(topic(registry_name, self.settings), key.encode(), value)

    async def flush(self) -> None:
        # Outputs must be acknowledged before the batch's offsets are committed.
        await self.batch.flush()


class KafkaDeadLetters:
    """Parks a message in kalo.dlq (services.common.dlq.park) through the batch's sender."""

    def __init__(self, sender: KafkaSender, service: str, stream: StreamMetrics) -> None:
        self.sender = sender
        self.service = service
        self.stream = stream

    async def park(self, message: Consumed, error: BaseException) -> None:
        async def send(key: str, value: bytes) -> None:
            await self.sender.send("kalo.dlq", key, value)

        async def send_audit(key: str, value: bytes) -> None:
            await self.sender.send("kalo.audit", key, value)

        await park(
            send,
            send_audit=send_audit,
            service=self.service,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            error=error,
            stream=self.stream,
        )
