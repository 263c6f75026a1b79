"""What every HTTP service's OpenAPI document adds to FastAPI's: servers, license and contact,
every error as RFC 7807 application/problem+json (services.common.problems), `Retry-After` on
429 and 503. `make lint` checks the exported documents with Redocly and Spectral."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi

if TYPE_CHECKING:
    from fastapi import FastAPI

LICENSE = {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"}
CONTACT = {"name": "Kalo", "url": "https://kalo.dev"}
RETRY_AFTER = {"$ref": "#/components/headers/Retry-After"}
HEADERS = {
    "Retry-After": {
        "description": "Whole seconds to wait before sending the same request again",
        "schema": {"type": "integer", "minimum": 1},
    }
}
# RFC 7807 problem details as services.common.problems.Problem writes them; a problem may add
# members of its own (`errors`, `rule`, `retry_after`, the resource it conflicts with).
PROBLEM = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 7807 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "every bad field"},
        "retry_after": {"type": "number", "description": "seconds, as in the Retry-After header"},
    },
    "additionalProperties": True,
}


def base_document(
    app: FastAPI, *, servers: list[dict[str, str]], tags: list[dict[str, str]]
) -> dict[str, Any]:
    """FastAPI's document of `app`'s routes, with servers, license, contact and tags."""
    return get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=servers,
        license_info=LICENSE,
        contact=CONTACT,
        tags=tags,
    )


def problems_as_problem_json(doc: dict[str, Any], schema: str) -> None:
    """Every 4xx and 5xx response as application/problem+json of `schema` (FastAPI writes a
    model under application/json), with `Retry-After` on 429 and 503."""
    components = doc.setdefault("components", {})
    components["headers"] = HEADERS
    for operations in doc["paths"].values():
        for operation in operations.values():
            for code, response in operation["responses"].items():
                if code[:1] not in ("4", "5"):
                    continue
                response["content"] = {
                    "application/problem+json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                }
                if code in ("429", "503"):
                    response.setdefault("headers", {})["Retry-After"] = RETRY_AFTER


def drop_unused_schemas(doc: dict[str, Any]) -> None:
    """FastAPI's own validation-error models are never sent (a 422 is a problem too)."""
    schemas = doc.get("components", {}).get("schemas", {})
    while True:
        text = json.dumps(doc)
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def render(doc: dict[str, Any]) -> str:
    """The exported text (contracts/*openapi.json): stable key order, one line per member."""
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
