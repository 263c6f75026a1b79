"""Generate the JSON Schemas and the AsyncAPI document from the models.

`python -m contracts.generate` rewrites `contracts/schemas/` and `contracts/asyncapi.yaml`;
tests/contract fails when the committed files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from contracts.envelope import Envelope, Payload
from contracts.flows import PARTIES
from contracts.topics import BY_NAME, TOPICS, Topic

HERE = Path(__file__).parent
SCHEMAS = HERE / "schemas"
# JSON Schema 2020-12 (what pydantic writes: `$defs`, `prefixItems` for the tuple lines); a
# tool assuming AsyncAPI's default (draft-07) would ignore `prefixItems` and let any line pass.
DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
SCHEMA_BASE = "https://kalo.dev/schemas/"
KAFKA_BINDING = "0.5.0"
# The defaults of KALO_PARTITIONS and KALO_MAX_MESSAGE_BYTES (services.common.settings;
# tests/contract checks they agree), used by `kalo topics apply` for every topic.
DEFAULT_PARTITIONS = 12
DEFAULT_MAX_MESSAGE_BYTES = 33_554_432


def schema_name(model: type[Payload]) -> str:
    return f"{model.TYPE}.v{model.VERSION}.json"


def envelope_schema(model: type[Payload]) -> dict[str, Any]:
    schema = Envelope[model].model_json_schema()  # type: ignore[valid-type]
    schema["title"] = f"{model.TYPE} v{model.VERSION}"
    schema["properties"]["type"]["const"] = model.TYPE
    schema["properties"]["version"]["const"] = model.VERSION
    return {"$schema": DIALECT, "$id": SCHEMA_BASE + schema_name(model), **schema}


def camel(topic: str) -> str:
    """kalo.declarations.submitted -> DeclarationsSubmitted"""
    return "".join(part[:1].upper() + part[1:] for part in topic.removeprefix("kalo.").split("."))


def channel(topic: Topic, refs: dict[str, Any]) -> dict[str, Any]:
    retention = "forever" if topic.retention_ms < 0 else f"{topic.retention_ms // (24 * 3600 * 1000)} days"
    partitions = topic.partitions or DEFAULT_PARTITIONS
    return {
        "address": topic.name,
        "title": topic.name,
        "description": f"{topic.description[:1].upper()}{topic.description[1:]}. Key: the {topic.key}. "
        f"Retention: {retention} (cleanup.policy {topic.cleanup_policy}). "
        + (
            "Partitions: 1."
            if topic.partitions
            else f"Partitions: KALO_PARTITIONS (default {DEFAULT_PARTITIONS})."
        )
        + " The physical name carries KALO_TOPIC_PREFIX in front, if set.",
        "messages": refs,
        "bindings": {
            "kafka": {
                "topic": topic.name,
                "partitions": partitions,
                "topicConfiguration": {
                    "cleanup.policy": [topic.cleanup_policy],
                    "retention.ms": topic.retention_ms,
                    "max.message.bytes": DEFAULT_MAX_MESSAGE_BYTES,
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def summary(model: type[Payload], topic: Topic) -> str:
    """The first paragraph of the model's docstring (its topic's description when it has none)."""
    doc = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    return doc or f"{topic.description[:1].upper()}{topic.description[1:]}."


def message(model: type[Payload], topic: Topic) -> dict[str, Any]:
    return {
        "name": model.TYPE,
        "title": f"{model.TYPE} v{model.VERSION}",
        "summary": summary(model, topic),
        "contentType": "application/json",
        "correlationId": {
            "description": "the declaration or claim the event belongs to",
            "location": "$message.payload#/correlation_id",
        },
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"./schemas/{schema_name(model)}"}},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"the {topic.key} (UTF-8)"},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def operations() -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for party in PARTIES:
        for action, topics in (("send", party.sends), ("receive", party.receives)):
            for name in topics:
                topic = BY_NAME[name]
                verb = "Sends" if action == "send" else "Receives"
                ops[f"{party.name}{verb}{camel(name)}"] = {
                    "action": action,
                    "title": f"{party.name} {action}s {name}",
                    "description": f"{party.name}: {party.description}",
                    "channel": {"$ref": f"#/channels/{name}"},
                    "messages": [
                        {"$ref": f"#/channels/{name}/messages/{model.__name__}"} for model in topic.values
                    ],
                }
    return ops


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in TOPICS:
        refs = {}
        for model in topic.values:
            messages[model.__name__] = message(model, topic)
            refs[model.__name__] = {"$ref": f"#/components/messages/{model.__name__}"}
        channels[topic.name] = channel(topic, refs)
    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": "Kalo event streams",
            "version": "1.0.0",
            "description": "Every message is a JSON envelope (id, type, version, occurred_at, "
            "producer, correlation_id, causation_id, data), validated by its JSON Schema "
            "(draft 2020-12) in contracts/schemas/. Keys are UTF-8 strings.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
            "contact": {"name": "Kalo", "url": "https://kalo.dev"},
        },
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "protocolVersion": "3.9",
                "description": "the broker of `make up` (deploy/local: Apache Kafka, KRaft, plaintext)",
            },
            "docker": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "protocolVersion": "3.9",
                "description": "docker-compose's broker, as the services of the compose network reach it",
            },
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations(),
        "components": {"messages": messages},
    }


def render() -> dict[Path, str]:
    """Every generated file and its text."""
    files: dict[Path, str] = {}
    for topic in TOPICS:
        for model in topic.values:
            text = json.dumps(envelope_schema(model), indent=2, sort_keys=True) + "\n"
            files[SCHEMAS / schema_name(model)] = text
    files[HERE / "asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False, width=100, allow_unicode=True)
    return files


def main() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    for old in SCHEMAS.glob("*.json"):
        old.unlink()
    for path, text in render().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
