"""The control commission's OpenAPI document: exported (contracts/control-openapi.json, `kalo
openapi`), every operation named and asking for a controller's key (or, to read, the page's
sign-in), every error as problem+json."""

from __future__ import annotations

import re
from typing import Any

from services.common.openapi import render
from services.control.openapi import EXPORT, document

READ_WITH_SIGN_IN = {"listSessions", "getSessionMinutes", "getSessionMinutesHtml", "getSessionMinutesPdf"}


def operations() -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for ops in document()["paths"].values() for op in ops.values()}


def test_exported_control_openapi_is_up_to_date() -> None:
    assert EXPORT.read_text() == render(document()), (
        "contracts/control-openapi.json is stale: run `kalo openapi`"
    )


def test_every_operation_is_named_and_secured() -> None:
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerApiKey"]["scheme"] == "bearer"
    assert schemes["sessionCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "kalo_control_session",
        "description": schemes["sessionCookie"]["description"],
    }
    ops = operations()
    assert len(ops) == 9
    for op_id, op in ops.items():
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", op_id), op_id
        wanted = (
            [{"bearerApiKey": []}, {"sessionCookie": []}]
            if op_id in READ_WITH_SIGN_IN
            else [{"bearerApiKey": []}]
        )
        assert op["security"] == wanted, op_id


def test_problems_are_problem_json_with_retry_after() -> None:
    ops = operations()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    retry_after = {"$ref": "#/components/headers/Retry-After"}
    for op_id, op in ops.items():
        for code in ("401", "403", "429", "503"):
            assert op["responses"][code]["content"] == problem, f"{op_id} {code}"
        for code in ("429", "503"):
            assert op["responses"][code]["headers"]["Retry-After"] == retry_after, f"{op_id} {code}"
    assert {"404", "409", "422"} <= set(ops["decideLiquidation"]["responses"])
    assert "409" in ops["openSession"]["responses"]
