"""The gateway's OpenAPI document: built from the routes (`build`, served at /openapi.json) and
exported to contracts/openapi.json (`kalo openapi`). `make lint` checks it with Redocly and Spectral."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi

if TYPE_CHECKING:
    from fastapi import FastAPI

EXPORT = Path(__file__).resolve().parents[2] / "contracts" / "openapi.json"
PROBLEM_SCHEMA = "ProblemDoc"
SERVERS = [{"url": "http://127.0.0.1:8080", "description": "a local gateway (`kalo run gateway`)"}]
LICENSE = {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"}
CONTACT = {"name": "Kalo", "url": "https://kalo.dev"}
TAGS = [
    {"name": "declarations", "description": "Monthly declarations: submit (JSON or CSV), status, report"},
    {"name": "accounts", "description": "What an employer owes per period and fund"},
    {"name": "pensions", "description": "Pension claims filed by back offices, liquidation and control"},
    {"name": "careers", "description": "Careers from before Kalo, imported by back offices"},
]
HEADERS = {
    "Retry-After": {
        "description": "Whole seconds to wait before sending the same request again",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def build(app: FastAPI) -> dict[str, Any]:
    """The document of `app`'s routes, with what FastAPI leaves out: the body models the routes
    parse themselves, problem+json as the errors' media type, `Retry-After` on 429 and 503."""
    from services.gateway.schemas import ClaimIn, DeclarationIn

    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=SERVERS,
        license_info=LICENSE,
        contact=CONTACT,
        tags=TAGS,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # The JSON body is parsed by the route itself (one pass, exact errors); publish its models.
    for model in (DeclarationIn, ClaimIn):
        models = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(models.pop("$defs", {}))
        schemas[model.__name__] = models
    components["headers"] = HEADERS
    for operations in doc["paths"].values():
        for operation in operations.values():
            for code, response in operation["responses"].items():
                if code[:1] in ("4", "5"):
                    _as_problem(code, response)
    _drop_unused_schemas(doc)
    return doc


def _as_problem(code: str, response: dict[str, Any]) -> None:
    # FastAPI writes a model's schema under application/json; a problem is sent as problem+json.
    response["content"] = {
        "application/problem+json": {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}
    }
    if code in ("429", "503"):
        response.setdefault("headers", {})["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}


def _drop_unused_schemas(doc: dict[str, Any]) -> None:
    """FastAPI's own validation-error models are never sent (422 is a problem too)."""
    schemas = doc["components"]["schemas"]
    while True:
        text = json.dumps(doc)
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def document() -> dict[str, Any]:
    from services.common.settings import Settings
    from services.gateway.app import create_app

    return create_app(Settings()).openapi()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def export(path: Path = EXPORT) -> bool:
    """Write the document; returns whether the file changed."""
    text = render(document())
    changed = not path.exists() or path.read_text() != text
    if changed:
        path.write_text(text)
    return changed
