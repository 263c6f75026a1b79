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
from contracts.topics import TOPICS

HERE = Path(__file__).parent
SCHEMAS = HERE / "schemas"


def schema_name(model: type[Payload]) -> str:
    return f"{model.TYPE}.v{model.VERSION}.json"


def envelope_schema(model: type[Payload]) -> dict[str, Any]:
    schema = Envelope[model].model_json_schema()  # type: ignore[valid-type]
    schema["title"] = f"{model.TYPE} v{model.VERSION}"
    schema["properties"]["type"]["const"] = model.TYPE
    schema["properties"]["version"]["const"] = model.VERSION
    return schema


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in TOPICS:
        refs = {}
        for model in topic.values:
            name = model.__name__
            messages[name] = {
                "name": model.TYPE,
                "contentType": "application/json",
                "payload": {"$ref": f"./schemas/{schema_name(model)}"},
            }
            refs[name] = {"$ref": f"#/components/messages/{name}"}
        channels[topic.name] = {
            "address": topic.name,
            "description": f"{topic.description}. Key: {topic.key}. "
            f"Retention: {'forever' if topic.retention_ms < 0 else f'{topic.retention_ms} ms'}.",
            "messages": refs,
        }
        operations[f"receive {topic.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{topic.name}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Kalo event streams",
            "version": "1.0.0",
            "description": "Every message is a JSON envelope (id, type, version, occurred_at, "
            "producer, correlation_id, causation_id, data).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[Path, str]:
    """Every generated file and its text."""
    files: dict[Path, str] = {}
    for topic in TOPICS:
        for model in topic.values:
            text = json.dumps(envelope_schema(model), indent=2, sort_keys=True) + "\n"
            files[SCHEMAS / schema_name(model)] = text
    files[HERE / "asyncapi.yaml"] = yaml.safe_dump(asyncapi(), sort_keys=False, width=100)
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
