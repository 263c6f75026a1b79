"""The exported OpenAPI document is the one the gateway serves (regenerate: `kalo openapi`)."""

from services.gateway.openapi import EXPORT, document, render


def test_exported_openapi_is_up_to_date() -> None:
    assert EXPORT.read_text() == render(document()), "contracts/openapi.json is stale: run `kalo openapi`"


def test_every_route_documents_its_problems() -> None:
    doc = document()
    submit = doc["paths"]["/v1/declarations"]["post"]
    assert {"202", "400", "401", "403", "409", "413", "422", "429"} <= set(submit["responses"])
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DeclarationIn"
    }
    assert {"DeclarationIn", "LineIn", "EmployerIn"} <= set(doc["components"]["schemas"])
    upload = doc["paths"]["/v1/declarations/upload"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "/v1/employers/{employer_id}/account" in doc["paths"]
