"""The committed JSON Schemas and AsyncAPI document match the models."""

import json

import pytest

from contracts.declarations import DeclarationSubmitted, Employer
from contracts.envelope import Envelope, derived_id, wrap
from contracts.generate import render
from contracts.topics import TOPICS


def test_committed_schemas_match_the_models() -> None:
    stale = [str(p) for p, text in render().items() if not p.exists() or p.read_text() != text]
    assert not stale, f"regenerate with `make schemas`: {stale}"


def test_every_topic_has_a_schema_per_message() -> None:
    files = {p.name for p in render()}
    for topic in TOPICS:
        for model in topic.values:
            assert f"{model.TYPE}.v{model.VERSION}.json" in files


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.name)
def test_topics_keep_audit_streams_forever(topic) -> None:
    if topic.name != "kalo.dlq":
        assert topic.retention_ms == -1


def test_derived_events_have_deterministic_ids() -> None:
    data = DeclarationSubmitted(
        declaration_id="D-1",
        employer=Employer(id="E1", regime="INPS", risk_class=2),
        period="2026-10",
        submitted_at="2026-11-10T09:00:00Z",
        payload_sha256="x",
        lines=[("W1", "salarie", 30, 250000, 0, 0, 0)],
    )
    cause = derived_id("D-1", "x")
    a = wrap(data, producer="t", correlation_id="D-1", causation_id=cause)
    b = wrap(data, producer="t", correlation_id="D-1", causation_id=cause)
    assert a.id == b.id
    round_trip = Envelope[DeclarationSubmitted].model_validate_json(a.model_dump_json())
    assert round_trip == a
    assert json.loads(a.model_dump_json())["data"]["lines"][0] == [
        "W1",
        "salarie",
        30,
        250000,
        0,
        0,
        0,
    ]
