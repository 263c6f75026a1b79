"""Bearer API keys → the principal calling, and what each role may do.

| role        | submit | read declarations         | read accounts       |
|-------------|--------|---------------------------|---------------------|
| employer    | own    | own                       | own                 |
| backoffice  | no     | any (filter by employer)  | any                 |
| auditor     | no     | any (filter by employer)  | any                 |
| controller  | no     | no (its API is the control commission's) | no   |
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.hashing import api_key_hash
from services.gateway.errors import Problem, forbidden
from services.gateway.registry import Principal, principal_for

# Staff roles that may read any employer's declarations and account.
READ_ANY = ("backoffice", "auditor")

# A dependency of every route (through `authenticate`), so that the OpenAPI document declares
# the scheme on each operation and /docs has an Authorize button; errors stay ours (401 problem).
bearer = HTTPBearer(
    scheme_name="bearerApiKey",
    bearerFormat="API key",
    description="the API key issued by `kalo employers add` (staff: `kalo keys add`), sent as "
    "`Authorization: Bearer <key>`",
    auto_error=False,
)


class PrincipalCache:
    """Key hash → principal for a few seconds: saves a database round trip per request.
    A revoked key or deactivated employer stops working within `ttl_s`."""

    def __init__(self, ttl_s: float = 10.0, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key_hash: str) -> Principal | None:
        hit = self._entries.get(key_hash)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl_s, principal)


async def authenticate(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    if creds is None:
        raise Problem(401, "Unauthorized", "send your API key as 'Authorization: Bearer <key>'")
    key_hash = api_key_hash(creds.credentials)
    cache: PrincipalCache = request.app.state.principals
    principal = cache.get(key_hash)
    if principal is None:
        # Unknown keys cost a lookup each: a client address that keeps failing is slowed down.
        failures = request.app.state.auth_failures
        client = request.client.host if request.client else "unknown"
        failures.refuse_if_empty(client)
        principal = await principal_for(request.app.state.pool, key_hash)
        if principal is None:
            failures.check(client)
            raise Problem(401, "Unauthorized", "unknown or revoked API key")
        cache.put(key_hash, principal)
    request.app.state.limiter.check(key_hash)
    return principal


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise forbidden(f"the role {principal.role!r} may not do this; it needs one of: {', '.join(roles)}")
