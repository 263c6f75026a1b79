"""The demo's requests to the gateway, as a well-behaved client sends them: a 429 (this key's
rate, `KALO_GATEWAY_RATE_PER_SECOND`) or a 503 (PostgreSQL or Kafka away) is waited out as the
gateway says, then sent again. Both are answered before anything is receipted, so sending
again files nothing twice."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

RETRIED = frozenset({429, 503})
MAX_TRIES = 60
MIN_WAIT_S = 0.05  # a 429's retry_after may round to 0.00 s: never spin


def wait_of(response: httpx.Response) -> float:
    """How long the gateway asks to wait: the problem's `retry_after` (fractions of a second),
    else the `Retry-After` header (whole seconds), else one second."""
    try:
        body = response.json()
    except ValueError:  # not JSON (a proxy's page)
        body = None
    after = body.get("retry_after") if isinstance(body, dict) else None
    if not isinstance(after, int | float):
        header = response.headers.get("Retry-After", "")
        after = float(header) if header.isdigit() else 1.0
    return max(MIN_WAIT_S, float(after))


async def post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """POST; a 429 or a 503 is sent again after the wait it asks for (at most MAX_TRIES)."""
    for _ in range(MAX_TRIES - 1):
        response = await client.post(url, **kwargs)
        if response.status_code not in RETRIED:
            return response
        await asyncio.sleep(wait_of(response))
    return await client.post(url, **kwargs)
