"""Bearer API keys → the principal calling."""

from __future__ import annotations

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.gateway.errors import Problem, forbidden
from services.gateway.registry import Principal, principal_for

bearer = HTTPBearer(auto_error=False, description="the API key issued by `kalo employers add`")


async def authenticate(request: Request) -> Principal:
    creds: HTTPAuthorizationCredentials | None = await bearer(request)
    if creds is None:
        raise Problem(401, "Unauthorized", "send your API key as 'Authorization: Bearer <key>'")
    principal = await principal_for(request.app.state.pool, creds.credentials)
    if principal is None:
        raise Problem(401, "Unauthorized", "unknown or revoked API key")
    request.app.state.limiter.check(creds.credentials)
    return principal


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"this needs one of the roles: {', '.join(roles)}")
