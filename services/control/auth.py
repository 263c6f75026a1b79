"""Who is calling: a controller, by its API key (Bearer, for the API) or by its sign-in
cookie (the page). Keys are the gateway's registry, read through the view
`control.controllers` (hashes only); any key that is not a controller's is refused (403)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.security import APIKeyCookie, HTTPBearer

from services.common.hashing import api_key_hash
from services.common.limits import RateLimiter
from services.control.errors import Problem
from services.control.handlers import Controller

SESSION_COOKIE = "kalo_control_session"
# The schemes, declared on the routes (services.control.routes) so that the OpenAPI document
# names them and /docs has an Authorize button; the key is read by `bearer_key`, the cookie
# by the sign-ins, and the errors stay ours (401, 403 problems).
API_KEY = HTTPBearer(
    scheme_name="bearerApiKey",
    bearerFormat="API key",
    description="a controller's API key (`kalo keys add controller`), as `Authorization: Bearer <key>`",
    auto_error=False,
)
SIGNED_IN = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="sessionCookie",
    description="the controllers' page's sign-in (reading only)",
    auto_error=False,
)
Lookup = Callable[[str], Awaitable[tuple[str, str | None] | None]]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class ControllerCache:
    """Key hash → controller for a few seconds (a key removed stops working within ttl_s)."""

    def __init__(self, lookup: Lookup, ttl_s: float = 10.0, max_entries: int = 10_000) -> None:
        self.lookup = lookup
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Controller]] = {}

    def cached(self, key_hash: str) -> Controller | None:
        hit = self._entries.get(key_hash)
        return hit[1] if hit is not None and hit[0] >= time.monotonic() else None

    async def controller(self, key_hash: str) -> Controller | None:
        hit = self.cached(key_hash)
        if hit is not None:
            return hit
        found = await self.lookup(key_hash)
        if found is None:
            return None
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        controller = Controller(found[0], found[1])
        self._entries[key_hash] = (time.monotonic() + self.ttl_s, controller)
        return controller


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


async def controller_from_key(request: Request) -> Controller:
    """The API's caller: 401 without a key, 403 for a key that is not a controller's."""
    key = bearer_key(request)
    if key is None:
        raise Problem(401, "Unauthorized", "send a controller's API key as 'Authorization: Bearer <key>'")
    controller = await known_controller(request, key)
    if controller is None:
        raise Problem(403, "Forbidden", "only controllers may use the control commission's API")
    return controller


async def known_controller(request: Request, key: str) -> Controller | None:
    """The controller of a key; failed look-ups are limited per client address (429)."""
    cache: ControllerCache = request.app.state.controllers
    key_hash = api_key_hash(key)
    controller = cache.cached(key_hash)
    if controller is not None:
        return controller
    limit: RateLimiter = request.app.state.auth_failures
    address = client_address(request)
    limit.refuse_if_empty(address)
    controller = await cache.controller(key_hash)
    if controller is None:
        limit.check(address)  # a failure takes a token
    return controller


async def controller_or_cookie(request: Request) -> Controller:
    """The API key if one is sent, otherwise the page's sign-in (reading only: the page's
    own forms check their CSRF token)."""
    if bearer_key(request) is not None:
        return await controller_from_key(request)
    signed_in = await request.app.state.signins.current(request)
    if signed_in is None:
        raise Problem(401, "Unauthorized", "sign in as a controller, or send a controller's API key")
    controller: Controller = signed_in.controller
    return controller
