"""Kafka clients with Kalo's limits, and `apply_topics` for the topic registry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from murmurhash2 import murmurhash2

from contracts.topics import TOPICS, topic_name
from services.common.settings import Settings, get_settings

# Kafka's murmur2 (the Java client's seed): the partition of a key, as aiokafka's default
# partitioner computes it. aiokafka's is pure Python, 5 µs for a 36-byte key, twice per
# declaration assessed; this C one gives the same hashes (a unit test compares them) in 0.2 µs.
KAFKA_MURMUR2_SEED = 0x9747B28C


def murmur2(key: bytes) -> int:
    return int(murmurhash2(key, KAFKA_MURMUR2_SEED))


def topic(name: str, settings: Settings | None = None) -> str:
    """The physical topic name for a registry name (with the environment's prefix)."""
    return topic_name(name, (settings or get_settings()).topic_prefix)


def producer(settings: Settings | None = None, **overrides: object) -> AIOKafkaProducer:
    s = settings or get_settings()
    options: dict[str, object] = {
        "bootstrap_servers": s.bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": s.max_message_bytes,
        "linger_ms": 5,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


def consumer(
    *topics: str, group_id: str | None, settings: Settings | None = None, **overrides: object
) -> AIOKafkaConsumer:
    s = settings or get_settings()
    options: dict[str, object] = {
        "bootstrap_servers": s.bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_bytes": s.max_message_bytes * 2,
        "max_partition_fetch_bytes": s.max_message_bytes,
        "isolation_level": "read_committed",
        "session_timeout_ms": int(s.kafka_session_timeout_s * 1000),
        "heartbeat_interval_ms": int(max(1.0, s.kafka_session_timeout_s / 4) * 1000),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)  # type: ignore[arg-type]


@dataclass
class TopicChange:
    topic: str
    action: str  # created | updated | unchanged | partitions


async def apply_topics(settings: Settings | None = None) -> list[TopicChange]:
    """Create missing topics; bring configs and partition counts of existing ones in line."""
    s = settings or get_settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap)
    await admin.start()
    changes: list[TopicChange] = []
    try:
        existing = set(await admin.list_topics())
        described = {}
        if existing:
            for d in await admin.describe_topics(
                [topic(t.name, s) for t in TOPICS if topic(t.name, s) in existing]
            ):
                described[d["topic"]] = len(d["partitions"])
        to_create = []
        for t in TOPICS:
            name = topic(t.name, s)
            configs = t.kafka_configs(s.max_message_bytes)
            wanted = t.partitions or s.partitions
            if name not in existing:
                to_create.append(NewTopic(name, wanted, 1, topic_configs=configs))
                changes.append(TopicChange(name, "created"))
                continue
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)])
            if described.get(name, wanted) < wanted:
                await admin.create_partitions({name: NewPartitions(wanted)})
                changes.append(TopicChange(name, "partitions"))
            else:
                changes.append(TopicChange(name, "updated"))
        if to_create:
            await admin.create_topics(to_create)
    finally:
        await admin.close()
    return changes


async def partitions_of(name: str, settings: Settings | None = None) -> list[int]:
    """The partition numbers of a physical topic (empty if it does not exist)."""
    s = settings or get_settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([name])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if not d.get("error_code") for p in d["partitions"])


class BatchSender:
    """Outputs of one batch of work, sent as a few record batches per partition.

    `producer.send` costs tens of µs per message; a month's assessments are ~230,000
    messages. Records are appended to a batch per topic-partition (the partition the
    default partitioner would choose for the key, so keys stay where they always were)
    and `flush` sends them and waits for every acknowledgement.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, int] = {}
        self._hashes: dict[bytes, int] = {}  # a key recurs per topic
        self._open: dict[tuple[str, int], Any] = {}
        self._futures: list[asyncio.Future[Any]] = []

    async def _partition_count(self, name: str) -> int:
        count = self._partitions[name] = len(await self.producer.partitions_for(name))
        return count

    async def send(
        self, name: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        count = self._partitions.get(name) or await self._partition_count(name)
        h = self._hashes.get(key)
        if h is None:
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        partition = h % count
        tp = (name, partition)
        batch = self._open.get(tp)
        extra = headers or []
        if batch is not None:
            if batch.append(timestamp=None, key=key, value=value, headers=extra) is not None:
                return
            # full: send it, start another
            self._futures.append(await self.producer.send_batch(batch, name, partition=partition))
        batch = self._open[tp] = self.producer.create_batch()
        batch.append(timestamp=None, key=key, value=value, headers=extra)  # a fresh batch takes any record

    async def flush(self) -> None:
        for (name, partition), batch in self._open.items():
            self._futures.append(await self.producer.send_batch(batch, name, partition=partition))
        self._open.clear()
        self._hashes.clear()
        futures, self._futures = self._futures, []
        await asyncio.gather(*futures)
