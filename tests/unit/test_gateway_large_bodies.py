"""The gateway's gate on large bodies: at most `at_once` large requests handled at a time,
each only once its whole body is in; small requests and reads never wait."""

from __future__ import annotations

import asyncio
from typing import Any

from services.gateway.app import LargeBodies


class App:
    """An ASGI app that reads the body, then holds until released; it records who is inside."""

    def __init__(self) -> None:
        self.inside: set[str] = set()
        self.most = 0
        self.bodies: dict[str, bytes] = {}
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies[name] = body
        self.inside.add(name)
        self.most = max(self.most, len(self.inside))
        await self.release.wait()
        self.inside.discard(name)
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def scope(path: str, length: int | None, method: str = "POST") -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "method": method, "path": path, "headers": headers}


def chunks(*parts: bytes, delay: float = 0.0) -> Any:
    queue = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(delay)
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def _sent(_: Any) -> None:
    return None


async def test_large_bodies_are_handled_at_most_two_at_a_time_small_ones_never_wait() -> None:
    app = App()
    gate = LargeBodies(app, threshold=10, at_once=2, waiting=8)
    big = [asyncio.create_task(gate(scope(f"/big{i}", 100), chunks(b"x" * 100), _sent)) for i in range(5)]
    small = asyncio.create_task(gate(scope("/small", 5), chunks(b"small"), _sent))
    read = asyncio.create_task(gate(scope("/read", None, "GET"), chunks(b""), _sent))
    await asyncio.sleep(0.05)
    assert {"/small", "/read"} <= app.inside  # not behind the large ones
    assert len(app.inside - {"/small", "/read"}) == 2
    app.release.set()
    await asyncio.gather(*big, small, read)
    assert app.most == 4  # two large, the small one and the read
    assert all(app.bodies[f"/big{i}"] == b"x" * 100 for i in range(5))  # every body whole


async def test_a_body_sent_slowly_takes_no_turn_until_it_is_in() -> None:
    app = App()
    gate = LargeBodies(app, threshold=10, at_once=1, waiting=8)
    slow = asyncio.create_task(gate(scope("/slow", None), chunks(b"a" * 50, b"b" * 50, delay=0.2), _sent))
    await asyncio.sleep(0.05)
    fast = asyncio.create_task(gate(scope("/fast", 100), chunks(b"y" * 100), _sent))
    await asyncio.sleep(0.05)
    assert app.inside == {"/fast"}  # the slow sender is still sending: it holds no turn
    app.release.set()
    await asyncio.gather(slow, fast)
    assert app.bodies["/slow"] == b"a" * 50 + b"b" * 50


async def test_beyond_the_large_requests_that_may_wait_the_next_is_answered_503() -> None:
    """Bodies that wait are held whole: one more than may wait is told to come back, before
    its body is read, and the others all get their turn."""
    app = App()
    gate = LargeBodies(app, threshold=10, at_once=1, waiting=1)
    inside = asyncio.create_task(gate(scope("/a", 100), chunks(b"a" * 100), _sent))
    waiting = asyncio.create_task(gate(scope("/b", 100), chunks(b"b" * 100), _sent))
    await asyncio.sleep(0.05)
    answered: list[dict[str, Any]] = []
    read: list[str] = []

    async def receive() -> dict[str, Any]:
        read.append("body")
        return {"type": "http.request", "body": b"c" * 100}

    async def send(message: dict[str, Any]) -> None:
        answered.append(message)

    await gate(scope("/c", 100), receive, send)
    start = answered[0]
    assert start["status"] == 503 and (b"retry-after", b"2") in start["headers"]
    assert read == []  # refused before its body was read
    app.release.set()
    await asyncio.gather(inside, waiting)
    assert set(app.bodies) == {"/a", "/b"}


def test_the_gates_limits_are_the_settings() -> None:
    from services.common.settings import Settings
    from services.gateway.app import create_app

    settings = Settings(
        gateway_large_body_bytes=4096, gateway_large_bodies_at_once=3, gateway_large_bodies_waiting=5
    )
    [gate] = [m for m in create_app(settings).user_middleware if m.cls is LargeBodies]
    assert gate.kwargs == {"threshold": 4096, "at_once": 3, "waiting": 5}
