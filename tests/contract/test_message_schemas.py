"""The published JSON Schemas (contracts/schemas, JSON Schema 2020-12) really check a message:
a malformed declaration line is refused, as an integrator's validator would refuse it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.validators import validator_for

from contracts.declarations import DeclarationSubmitted, Employer
from contracts.envelope import derived_id, wrap
from contracts.generate import SCHEMA_FORMAT, schema_name
from contracts.topics import TOPICS

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "contracts" / "schemas"
SUBMITTED = SCHEMAS / schema_name(DeclarationSubmitted)
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
# worker_id, category, days_worked, base_salary, bonuses, benefits_in_kind, expense_reimbursements
GOOD_LINE = ["W1", "salarie", 30, 250000, 0, 0, 0]
BAD_LINE = [1, 2, "thirty", "x", None, None, None]


def submitted(lines: list[list[Any]]) -> dict[str, Any]:
    """A declaration.submitted envelope as it is on the wire, with these lines."""
    data = DeclarationSubmitted(
        declaration_id="D-1",
        employer=Employer(id="E1", regime="INPS", risk_class=2),
        period="2026-10",
        submitted_at="2026-11-10T09:00:00Z",
        payload_sha256="x",
        lines=[tuple(GOOD_LINE)],
    )
    doc: dict[str, Any] = json.loads(
        wrap(
            data, producer="gateway", correlation_id="D-1", causation_id=derived_id("D-1", "x")
        ).model_dump_json()
    )
    doc["data"]["lines"] = lines
    return doc


def published(path: Path = SUBMITTED) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    validator = validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_every_schema_declares_2020_12_and_its_id(path: Path) -> None:
    schema = published(path)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://kalo.dev/schemas/{path.name}"
    assert validator_for(schema) is Draft202012Validator
    Draft202012Validator.check_schema(schema)


def test_a_good_line_passes() -> None:
    assert errors(published(), submitted([GOOD_LINE])) == []


def test_a_malformed_line_is_refused_by_the_published_schema() -> None:
    found = errors(published(), submitted([GOOD_LINE, BAD_LINE]))
    # Each bad cell of the second line, by its position in the tuple.
    assert "data/lines/1/0: 1 is not of type 'string'" in found
    assert "data/lines/1/1: 2 is not of type 'string'" in found
    assert "data/lines/1/2: 'thirty' is not of type 'integer'" in found
    assert "data/lines/1/3: 'x' is not of type 'integer'" in found
    assert "data/lines/1/4: None is not of type 'integer'" in found
    assert not [e for e in found if e.startswith("data/lines/0")], found


def test_a_line_of_the_wrong_length_is_refused() -> None:
    assert errors(published(), submitted([GOOD_LINE[:6]]))
    assert errors(published(), submitted([[*GOOD_LINE, 0]]))


def test_read_as_draft_07_the_same_schema_lets_the_bad_line_through() -> None:
    """Why the dialect is declared: draft-07 (AsyncAPI's default schema format) has no
    `prefixItems`, so a validator that assumes it checks nothing inside a line."""
    assert list(Draft7Validator(published()).iter_errors(submitted([BAD_LINE]))) == []


def test_check_jsonschema_refuses_the_malformed_line(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(submitted([GOOD_LINE])))
    bad.write_text(json.dumps(submitted([BAD_LINE])))

    def check(instance: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CHECK_JSONSCHEMA), "--schemafile", str(SUBMITTED), str(instance)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    passed = check(good)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    refused = check(bad)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "'thirty' is not of type 'integer'" in refused.stdout


def test_asyncapi_messages_declare_the_2020_12_format_and_their_schema() -> None:
    doc = yaml.safe_load((ROOT / "contracts" / "asyncapi.yaml").read_text())
    messages = doc["components"]["messages"]
    for topic in TOPICS:
        for model in topic.values:
            payload = messages[model.__name__]["payload"]
            assert payload["schemaFormat"] == SCHEMA_FORMAT == "application/schema+json;version=draft-2020-12"
            assert payload["schema"] == {"$ref": f"./schemas/{schema_name(model)}"}
            assert (SCHEMAS / schema_name(model)).exists()
