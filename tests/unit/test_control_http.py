"""The control's HTTP answers without a database: PostgreSQL away is a 503 with Retry-After
(never a 500), a missing key 401, a bug a 500 problem+json with an incident id."""

from __future__ import annotations

from typing import Any

import httpx

from services.common.settings import Settings
from services.control.app import create_app
from services.rules import load_ruleset


class AwayPool:
    """A pool whose PostgreSQL is not there."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class Relay:
    leading = False

    def wake(self) -> None: ...


def client(error: Exception) -> httpx.AsyncClient:
    app = create_app(Settings(), pool=AwayPool(error), relay=Relay(), ruleset=load_ruleset())  # type: ignore[arg-type]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    )


async def test_postgresql_away_is_a_503_with_retry_after() -> None:
    async with client(ConnectionRefusedError("connection refused")) as c:
        r = await c.get("/v1/liquidations", headers={"Authorization": "Bearer kalo_cont_x"})
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.headers["content-type"] == "application/problem+json"
        health = await c.get("/health")  # alive: asks nothing of PostgreSQL
        assert health.status_code == 200 and health.json()["status"] == "ok"
        ready = await c.get("/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "2"
        assert ready.json()["not_ready"] == ["postgres"]
        assert ready.json()["checks"]["postgres"].startswith("down: ConnectionRefusedError")


async def test_no_key_is_a_401_and_a_bug_a_500_with_an_incident() -> None:
    async with client(RuntimeError("a bug")) as c:
        r = await c.get("/v1/liquidations")
        assert r.status_code == 401 and r.json()["title"] == "Unauthorized"
        r = await c.get("/v1/liquidations", headers={"Authorization": "Bearer kalo_cont_x"})
        assert r.status_code == 500 and r.json()["incident"]
        assert r.headers["content-type"] == "application/problem+json"


async def test_the_page_sends_a_visitor_to_sign_in_and_refuses_a_sign_in_without_its_token() -> None:
    async with client(ConnectionRefusedError("connection refused")) as c:
        r = await c.get("/liquidations")
        assert r.status_code == 303 and r.headers["location"] == "/signin"
        form = await c.get("/signin")
        assert (
            form.status_code == 200
            and 'label for="key"' in form.text
            and "kalo_control_csrf" in form.headers["set-cookie"]
        )
        c.cookies.clear()
        r = await c.post("/signin", data={"key": "kalo_cont_x", "csrf": "forged"})
        assert r.status_code == 403 and "expired" in r.text


class NoKeysPool(AwayPool):
    """A registry that knows no controller."""

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return None


async def test_an_address_that_keeps_failing_to_authenticate_is_slowed_down() -> None:
    settings = Settings(gateway_auth_failures_burst=2, gateway_auth_failures_per_second=0.01)
    app = create_app(settings, pool=NoKeysPool(RuntimeError()), relay=Relay(), ruleset=load_ruleset())  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        statuses = [
            (await c.get("/v1/liquidations", headers={"Authorization": f"Bearer guess-{i}"})).status_code
            for i in range(3)
        ]
        assert statuses == [403, 403, 429]
        r = await c.get("/v1/liquidations", headers={"Authorization": "Bearer guess-4"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
