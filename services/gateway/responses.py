"""The gateway's responses: problem+json and orjson-rendered JSON (services.common.problems)."""

from services.common.problems import ORJSONResponse, ProblemResponse

__all__ = ["ORJSONResponse", "ProblemResponse"]
