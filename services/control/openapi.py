"""The control commission's OpenAPI document: built from its API's routes (`build`, served at
/openapi.json) and exported to contracts/control-openapi.json (`kalo openapi`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.openapi import PROBLEM, base_document, drop_unused_schemas, problems_as_problem_json

if TYPE_CHECKING:
    from fastapi import FastAPI

EXPORT = Path(__file__).resolve().parents[2] / "contracts" / "control-openapi.json"
SERVERS = [{"url": "http://127.0.0.1:8081", "description": "a local control commission (`kalo run control`)"}]
TAGS = [
    {"name": "liquidations", "description": "Liquidations under control: flags, re-computation, decisions"},
    {"name": "sessions", "description": "Control sessions and their sealed minutes"},
]


def build(app: FastAPI) -> dict[str, Any]:
    doc = base_document(app, servers=SERVERS, tags=TAGS)
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM
    problems_as_problem_json(doc, "Problem")
    drop_unused_schemas(doc)
    return doc


def document() -> dict[str, Any]:
    """The document of an app built for it alone (no pool, relay or ruleset: nothing runs)."""
    from services.common.settings import Settings
    from services.control.app import create_app

    app = create_app(Settings(), pool=None, relay=None, ruleset=None)  # type: ignore[arg-type]
    return app.openapi()
