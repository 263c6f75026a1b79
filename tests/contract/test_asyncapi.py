"""The AsyncAPI document says what `kalo topics apply` does and who sends and receives what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from contracts.flows import PARTIES
from contracts.generate import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PARTITIONS, camel
from contracts.topics import TOPICS
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "assessment", "liquidation", "ledger", "control")


def document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "contracts" / "asyncapi.yaml").read_text())
    return doc


def test_the_defaults_written_are_the_settings_defaults() -> None:
    fields = Settings.model_fields
    assert fields["partitions"].default == DEFAULT_PARTITIONS
    assert fields["max_message_bytes"].default == DEFAULT_MAX_MESSAGE_BYTES


def test_servers_are_the_local_and_the_compose_brokers() -> None:
    servers = document()["servers"]
    assert {(s["host"], s["protocol"]) for s in servers.values()} == {
        ("127.0.0.1:9092", "kafka"),
        ("kafka:9092", "kafka"),
    }
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert (
        "PLAINTEXT://kafka:9092" in compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    )


def test_every_topic_has_its_kafka_binding() -> None:
    channels = document()["channels"]
    assert set(channels) == {t.name for t in TOPICS}
    for topic in TOPICS:
        binding = channels[topic.name]["bindings"]["kafka"]
        assert binding["topic"] == topic.name
        assert binding["partitions"] == (topic.partitions or DEFAULT_PARTITIONS)
        config = binding["topicConfiguration"]
        applied = topic.kafka_configs(DEFAULT_MAX_MESSAGE_BYTES)  # what `kalo topics apply` sets
        assert config["retention.ms"] == int(applied["retention.ms"])
        assert config["cleanup.policy"] == [applied["cleanup.policy"]]
        assert config["max.message.bytes"] == int(applied["max.message.bytes"])
    assert channels["kalo.rulesets"]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == [
        "compact"
    ]
    assert channels["kalo.dlq"]["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == 90 * 86_400_000


def test_every_message_says_what_its_key_is() -> None:
    messages = document()["components"]["messages"]
    keys = {model.__name__: topic.key for topic in TOPICS for model in topic.values}
    assert set(messages) == set(keys)
    for name, key in keys.items():
        schema = messages[name]["bindings"]["kafka"]["key"]
        assert schema["type"] == "string"
        assert key in schema["description"]
    assert "employer id" in messages["DeclarationSubmitted"]["bindings"]["kafka"]["key"]["description"]
    assert "worker id" in messages["PensionClaimFiled"]["bindings"]["kafka"]["key"]["description"]


def test_each_service_sends_and_receives_its_topics() -> None:
    operations = document()["operations"]
    sends = {
        (op["title"].split()[0], op["channel"]["$ref"].split("/")[-1])
        for op in operations.values()
        if op["action"] == "send"
    }
    receives = {
        (op["title"].split()[0], op["channel"]["$ref"].split("/")[-1])
        for op in operations.values()
        if op["action"] == "receive"
    }
    assert ("gateway", "kalo.declarations.submitted") in sends
    assert ("assessment", "kalo.declarations.submitted") in receives
    assert ("assessment", "kalo.declarations.assessed") in sends
    assert ("liquidation", "kalo.pensions.claims") in receives
    assert ("liquidation", "kalo.pensions.liquidations") in sends
    assert ("control", "kalo.pensions.liquidations") in receives
    assert ("control", "kalo.pensions.approved") in sends
    assert ("ledger", "kalo.declarations.assessed") in receives
    assert ("backOffices", "kalo.amo.deductions") in receives
    for service in SERVICES:
        assert any(who == service for who, _ in sends), f"{service} sends nothing"
    # Every topic has a sender and a receiver; each operation names its channel's messages.
    for topic in TOPICS:
        assert any(t == topic.name for _, t in sends), topic.name
        assert any(t == topic.name for _, t in receives), topic.name
    for party in PARTIES:
        for name in party.sends:
            op = operations[f"{party.name}Sends{camel(name)}"]
            assert op["messages"] == [
                {"$ref": f"#/channels/{name}/messages/{m}"} for m in document()["channels"][name]["messages"]
            ]
