"""The gateway's OpenAPI document, exported to contracts/openapi.json (`kalo openapi`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXPORT = Path(__file__).resolve().parents[2] / "contracts" / "openapi.json"


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
