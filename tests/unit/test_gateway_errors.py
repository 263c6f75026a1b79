"""How the gateway answers what goes wrong inside a request: an outage is 503 with
Retry-After, a bug a 500 problem+json with an incident id — never a bare text page."""

from __future__ import annotations

import asyncpg
from fastapi.testclient import TestClient

from services.common.settings import Settings
from services.gateway.app import create_app


def client() -> TestClient:
    app = create_app(Settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/nul")
    async def nul() -> None:
        raise asyncpg.exceptions.CharacterNotInRepertoireError(
            'invalid byte sequence for encoding "UTF8": 0x00'
        )

    @app.get("/away")
    async def away() -> None:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")

    # No `with`: the lifespan (pool, relay) is not started; these routes need neither.
    return TestClient(app, raise_server_exceptions=False)


def test_a_bug_is_a_500_problem_with_an_incident_id() -> None:
    r = client().get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == "Internal error" and len(body["incident"]) == 12
    assert "a bug" not in r.text  # the error itself stays in the log


def test_postgresql_away_is_a_503_with_retry_after() -> None:
    r = client().get("/away")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["Retry-After"]) >= 1


def test_a_value_postgresql_cannot_store_is_a_422() -> None:
    r = client().get("/nul")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "0x00" in r.json()["detail"]
