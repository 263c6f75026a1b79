"""The exported OpenAPI document is the one the gateway serves (regenerate: `kalo openapi`)."""

import re
from typing import Any

from services.gateway.openapi import EXPORT, document, render


def test_exported_openapi_is_up_to_date() -> None:
    assert EXPORT.read_text() == render(document()), "contracts/openapi.json is stale: run `kalo openapi`"


def test_every_route_documents_its_problems() -> None:
    doc = document()
    submit = doc["paths"]["/v1/declarations"]["post"]
    assert {"202", "400", "401", "403", "409", "413", "415", "422", "429", "503"} <= set(submit["responses"])
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DeclarationIn"
    }
    assert {"DeclarationIn", "LineIn", "EmployerIn"} <= set(doc["components"]["schemas"])
    upload = doc["paths"]["/v1/declarations/upload"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "/v1/employers/{employer_id}/account" in doc["paths"]


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document()["paths"].items() for method, op in ops.items()]


def test_every_operation_asks_for_the_bearer_api_key() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"] == {
        "bearerApiKey": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "API key",
            "description": doc["components"]["securitySchemes"]["bearerApiKey"]["description"],
        }
    }
    for path, method, op in operations():
        assert op["security"] == [{"bearerApiKey": []}], f"{method} {path}"
        assert "401" in op["responses"], f"{method} {path}"


def test_operation_ids_are_named_camel_case_and_unique() -> None:
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)) == 11
    for op_id in ids:
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", op_id), op_id
    assert document()["paths"]["/v1/declarations"]["post"]["operationId"] == "submitDeclarationJson"


def test_problems_are_problem_json_and_say_when_to_retry() -> None:
    doc = document()
    retry_after = {"$ref": "#/components/headers/Retry-After"}
    assert doc["components"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    for path, method, op in operations():
        for code, response in op["responses"].items():
            if code[:1] in ("4", "5"):
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDoc"}}
                }, f"{method} {path} {code}"
        for code in ("429", "503"):
            assert op["responses"][code]["headers"]["Retry-After"] == retry_after, f"{method} {path} {code}"
    report = doc["paths"]["/v1/declarations/{declaration_id}/report.csv"]["get"]["responses"]
    assert report["409"]["headers"]["Retry-After"] == retry_after


def test_receipts_document_the_idempotency_headers() -> None:
    for path, method, op in operations():
        if method != "post":
            continue
        params = {p["name"]: p for p in op["parameters"]}
        assert params["Idempotency-Key"]["in"] == "header", f"{method} {path}"
        replayed = op["responses"]["202"]["headers"]["Idempotent-Replayed"]
        assert replayed["schema"] == {"type": "string", "enum": ["true"]}


def test_servers_license_and_contact() -> None:
    doc = document()
    assert doc["servers"][0]["url"] == "http://127.0.0.1:8080"
    assert doc["info"]["license"]["name"] == "Apache-2.0"
    assert doc["info"]["contact"]["name"]
