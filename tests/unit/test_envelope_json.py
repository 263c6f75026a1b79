"""envelope_json writes the same envelope as pydantic, around an already-encoded payload."""

import uuid
from datetime import UTC, datetime

import orjson

from contracts.declarations import WorkerPreRegistered
from contracts.envelope import Envelope, envelope_json, wrap


def test_envelope_json_matches_the_model() -> None:
    data = WorkerPreRegistered(declaration_id="D1", employer_id="E1", period="2026-10", worker_ids=["W1"])
    cause = uuid.uuid4()
    at = datetime(2026, 11, 10, 9, 0, 0, 123456, tzinfo=UTC)
    event_id, raw = envelope_json(
        data.model_dump_json().encode(),
        WorkerPreRegistered,
        producer="assessment",
        correlation_id="D1",
        causation_id=cause,
        occurred_at=at,
    )
    model = wrap(data, producer="assessment", correlation_id="D1", causation_id=cause, occurred_at=at)
    assert event_id == model.id
    assert orjson.loads(raw) == orjson.loads(model.model_dump_json())
    assert Envelope[WorkerPreRegistered].model_validate_json(raw) == model
