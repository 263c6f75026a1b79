"""envelope_json writes the same envelope as pydantic, around an already-encoded payload."""

import uuid
from datetime import UTC, datetime

import orjson

from contracts.declarations import WorkerPreRegistered
from contracts.envelope import KALO_NAMESPACE, Envelope, Envelopes, derived_id, envelope_json, uuid_text, wrap


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


def test_derived_ids_are_uuid5_of_the_cause_and_type() -> None:
    """The fast derived_id gives uuid.uuid5's ids, as UUIDs that compare, hash and print alike."""
    for cause in [uuid.uuid4() for _ in range(200)] + ["D-2026-10-0001", "é:ü"]:
        for kind in ("kalo.declaration.assessed", "kalo.audit.recorded"):
            expected = uuid.uuid5(KALO_NAMESPACE, f"{cause}:{kind}")
            got = derived_id(cause, kind)
            assert got == expected
            assert str(got) == str(expected) and hash(got) == hash(expected)
            assert got.version == 5 and got.variant == uuid.RFC_4122
            assert orjson.dumps(got) == orjson.dumps(expected)


def test_the_remembered_text_of_a_cause_is_its_own() -> None:
    """`uuid_text` remembers the last UUID's text: causes that alternate, equal UUIDs that are
    other objects, and strings each get their own text, and every derived id stays uuid5's."""
    causes = [uuid.uuid4() for _ in range(5)]
    for cause in [*causes, *reversed(causes), causes[0], uuid.UUID(str(causes[0])), "D-1", causes[1], "D-1"]:
        assert uuid_text(cause) == str(cause)
        assert derived_id(cause, "t") == uuid.uuid5(KALO_NAMESPACE, f"{cause}:t")
        assert uuid_text(cause) == str(cause)  # asked again: the remembered text


def test_envelopes_of_one_cause_are_envelope_jsons_bytes() -> None:
    """`Envelopes` shares the head of one cause's outputs: byte for byte what envelope_json
    writes, ids derived alike, for UUID and text causes and odd correlation ids."""
    from contracts.declarations import DeclarationRejected

    at = datetime(2026, 11, 10, 9, 0, 0, 123456, tzinfo=UTC)
    payload = b'{"declaration_id":"D1"}'
    for cause in [uuid.uuid4(), uuid.uuid4(), "D-2026-10-0001"]:
        for correlation in ("D1", 'D "quoted" é\\'):
            envelopes = Envelopes(
                producer="assessment", correlation_id=correlation, causation_id=cause, occurred_at=at
            )
            for kind in (WorkerPreRegistered, DeclarationRejected):
                _, expected = envelope_json(
                    payload,
                    kind,
                    producer="assessment",
                    correlation_id=correlation,
                    causation_id=cause,
                    occurred_at=at,
                )
                assert envelopes.json(payload, kind) == expected
