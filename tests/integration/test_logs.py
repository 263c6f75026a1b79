"""A service's log, as a log shipper reads it: JSON lines, and the lines about a declaration
carry its id (correlation) and the id of the event being handled (causation)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.integration.conftest import Stack, wait_http
from tests.integration.helpers import auth, consume_until, declaration, inps_line, register_employer


def json_lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    text = (stack.logs / f"{name}.log").read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, f"{name} logged nothing"
    return [json.loads(line) for line in lines]  # every line: one JSON object


async def test_the_lines_about_a_declaration_are_json_with_its_correlation_and_causation_ids(fresh) -> None:
    stack, db = fresh
    gateway = stack.start("gateway", KALO_LOG_LEVEL="DEBUG")
    stack.start("assessment", KALO_LOG_LEVEL="DEBUG")
    wait_http(f"{stack.gateway_url}/health", gateway)
    employer_id, key = await register_employer(db, risk_class=2)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        r = await client.post(
            "/v1/declarations",
            json=declaration(employer_id, [inps_line("W1", 250_000)]),
            headers={**auth(key), "X-Request-ID": "req-logs-1"},
        )
    assert r.status_code == 202, r.text
    declaration_id = r.json()["declaration_id"]
    submitted = await consume_until(
        stack.settings, "kalo.declarations.submitted", lambda e: e["data"]["declaration_id"] == declaration_id
    )
    await consume_until(
        stack.settings, "kalo.declarations.assessed", lambda e: e["data"]["declaration_id"] == declaration_id
    )

    assessment = json_lines(stack, "assessment")
    about = [line for line in assessment if line.get("correlation_id") == declaration_id]
    assert about, stack.log_tail("assessment")
    assert {line["causation_id"] for line in about} == {submitted["id"]}
    assert all(line["service"] == "assessment" and "level" in line for line in assessment)
    # faust's and aiokafka's own lines come through the same formatter.
    assert {"faust", "aiokafka"} & {str(line["logger"]).split(".")[0] for line in assessment}

    gateway_lines = json_lines(stack, "gateway")
    received = [line for line in gateway_lines if line.get("correlation_id") == declaration_id]
    assert received and received[0]["request_id"] == "req-logs-1", stack.log_tail("gateway")
    assert key not in (stack.logs / "gateway.log").read_text()
