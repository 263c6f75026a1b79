"""JSON responses rendered by orjson (the documents are plain dicts; no second validation)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemResponse(ORJSONResponse):
    media_type = "application/problem+json"
