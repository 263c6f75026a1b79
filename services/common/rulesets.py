"""Every ruleset a service runs, stored under its id on the compacted topic `kalo.rulesets`.

A service publishes its parameter tree when it starts (`publish_ruleset`); the replay reads
them back (`read_rulesets`) and re-derives each event with the tree whose id it carries,
checking the content hash first, so an old period re-derives with the law of its time.
The topic keeps the latest value per key (the id), and an id's value never changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from contracts.audit import RulesetPublished
from contracts.envelope import derived_id, envelope_json
from services.common import kafka
from services.common.settings import Settings


def ruleset_message(ruleset_id: str, files: Mapping[str, bytes], producer: str) -> bytes:
    data = orjson.dumps({"ruleset": ruleset_id, "files": {k: files[k].decode() for k in sorted(files)}})
    RulesetPublished.model_validate_json(data)
    _, value = envelope_json(
        data,
        RulesetPublished,
        producer=producer,
        correlation_id=ruleset_id,
        event_id=derived_id(ruleset_id, RulesetPublished.TYPE),
    )
    return value


async def publish_ruleset(
    producer: AIOKafkaProducer, settings: Settings, ruleset_id: str, files: Mapping[str, bytes], service: str
) -> None:
    """Store the tree under its id (idempotent: the same id always carries the same tree)."""
    if not files:
        raise ValueError(f"ruleset {ruleset_id} has no files to publish")
    await producer.send_and_wait(
        kafka.topic("kalo.rulesets", settings),
        ruleset_message(ruleset_id, files, service),
        key=ruleset_id.encode(),
    )


async def read_rulesets(settings: Settings) -> dict[str, dict[str, bytes]]:
    """Every stored tree by its id (as published; the caller checks the content hash)."""
    name = kafka.topic("kalo.rulesets", settings)
    consumer = kafka.consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for p in await kafka.partitions_of(name, settings)]
        if not tps:
            return {}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        trees: dict[str, dict[str, bytes]] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    if r.offset >= ends[tp] or r.value is None:
                        continue
                    data = orjson.loads(r.value)["data"]
                    trees[data["ruleset"]] = {k: v.encode() for k, v in data["files"].items()}
        return trees
    finally:
        await consumer.stop()
