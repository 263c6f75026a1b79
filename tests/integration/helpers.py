"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from services.common import kafka
from services.common.settings import Settings
from services.gateway.registry import add_employer


async def register_employer(
    conn: asyncpg.Connection,
    *,
    regime: str = "INPS",
    risk_class: int | None = 2,
    filing: str = "monthly",
) -> tuple[str, str]:
    employer_id = f"E{uuid.uuid4().hex[:10]}"
    key = await add_employer(
        conn,
        employer_id=employer_id,
        regime=regime,
        risk_class=risk_class if regime == "INPS" else None,
        filing=filing,
    )
    return employer_id, key


def inps_line(worker_id: str, gross: int, days: int = 30) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "category": "salarie",
        "days_worked": days,
        "base_salary": gross,
        "bonuses": 0,
        "benefits_in_kind": 0,
        "expense_reimbursements": 0,
    }


def declaration(
    employer_id: str,
    lines: list[dict[str, Any]],
    *,
    period: str = "2026-10",
    regime: str = "INPS",
    risk_class: int | None = 2,
    replaces: str | None = None,
    filing: str = "monthly",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "employer": {
            "id": employer_id,
            "regime": regime,
            "risk_class": risk_class,
            "filing": filing,
        },
        "period": period,
        "lines": lines,
    }
    if replaces:
        body["replaces"] = replaces
    return body


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def wait_status(
    client: httpx.AsyncClient, declaration_id: str, key: str, seconds: float = 60
) -> dict[str, Any]:
    """Poll the gateway until the declaration is no longer `received`."""
    deadline = time.monotonic() + seconds
    while True:
        r = await client.get(f"/v1/declarations/{declaration_id}", headers=auth(key))
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        if doc["status"] != "received":
            return doc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{declaration_id} still received after {seconds}s")
        await asyncio.sleep(0.2)


def _events(records: Iterable[Any]) -> list[dict[str, Any]]:
    """The JSON events among `records`. The session's topics are shared by every test, and the
    hostile ones write raw bytes to them on purpose (the services park those on the DLQ); a
    reader looking for its own events steps over them."""
    out: list[dict[str, Any]] = []
    for record in records:
        try:
            event = orjson.loads(record.value)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(event, dict) and isinstance(event.get("data"), dict):
            out.append(event)
    return out


async def consume_until(
    settings: Settings, topic: str, predicate: Callable[[dict[str, Any]], bool], seconds: float = 60
) -> dict[str, Any]:
    """Read a topic from the beginning until an event matches; returns it."""
    consumer = kafka.consumer(kafka.topic(topic, settings), group_id=None, settings=settings)
    await consumer.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for event in _events(records):
                    try:
                        matched = predicate(event)
                    except (KeyError, TypeError, IndexError, AttributeError):
                        continue  # a hostile test's event of the wrong shape
                    if matched:
                        return event
        raise TimeoutError(f"no matching event on {topic} after {seconds}s")
    finally:
        await consumer.stop()


async def read_all(settings: Settings, topic: str, seconds: float = 3) -> list[dict[str, Any]]:
    """Every event of a topic (until it has been quiet for `seconds`)."""
    consumer = kafka.consumer(kafka.topic(topic, settings), group_id=None, settings=settings)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < seconds:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                if records:
                    out.extend(_events(records))
                    quiet_since = time.monotonic()
        return out
    finally:
        await consumer.stop()


ROOT = Path(__file__).resolve().parents[2]


def kalo(env: Mapping[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`kalo ARGS` as a user runs it: a process of its own, this environment, text out."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
