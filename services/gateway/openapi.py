"""The gateway's OpenAPI document: built from the routes (`build`, served at /openapi.json) and
exported to contracts/openapi.json (`kalo openapi`). `make lint` checks it with Redocly and Spectral."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.openapi import base_document, drop_unused_schemas, problems_as_problem_json, render

if TYPE_CHECKING:
    from fastapi import FastAPI

EXPORT = Path(__file__).resolve().parents[2] / "contracts" / "openapi.json"
SERVERS = [{"url": "http://127.0.0.1:8080", "description": "a local gateway (`kalo run gateway`)"}]
TAGS = [
    {"name": "declarations", "description": "Monthly declarations: submit (JSON or CSV), status, report"},
    {"name": "accounts", "description": "What an employer owes per period and fund"},
    {"name": "pensions", "description": "Pension claims filed by back offices, liquidation and control"},
    {"name": "careers", "description": "Careers from before Kalo, imported by back offices"},
]


def build(app: FastAPI) -> dict[str, Any]:
    """The document of `app`'s routes, with what FastAPI leaves out: the body models the routes
    parse themselves, problem+json as the errors' media type, `Retry-After` on 429 and 503."""
    from services.gateway.schemas import ClaimIn, DeclarationIn

    doc = base_document(app, servers=SERVERS, tags=TAGS)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    # The JSON body is parsed by the route itself (one pass, exact errors); publish its models.
    for model in (DeclarationIn, ClaimIn):
        models = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(models.pop("$defs", {}))
        schemas[model.__name__] = models
    problems_as_problem_json(doc, "ProblemDoc")
    drop_unused_schemas(doc)
    return doc


def document() -> dict[str, Any]:
    from services.common.settings import Settings
    from services.gateway.app import create_app

    return create_app(Settings()).openapi()


def export(path: Path = EXPORT) -> bool:
    """Write the document; returns whether the file changed."""
    text = render(document())
    changed = not path.exists() or path.read_text() != text
    if changed:
        path.write_text(text)
    return changed
