"""The demo's client waits out a 429 (its key's rate) or a 503 (an outage) as the gateway says,
then sends the request again; anything else is returned as it came."""

from __future__ import annotations

import httpx
import pytest

from services.demo import client as demo_client


def _gateway(answers: list[httpx.Response]) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://gateway"), seen


def _too_many(retry_after: float) -> httpx.Response:
    body = {"status": 429, "title": "Too many requests", "retry_after": retry_after}
    return httpx.Response(429, json=body, headers={"Retry-After": "1"})


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(demo_client.asyncio, "sleep", sleep)
    return slept


async def test_a_429_is_waited_out_as_its_problem_says_then_sent_again(waits: list[float]) -> None:
    client, seen = _gateway([_too_many(0.25), _too_many(0.0), httpx.Response(202, json={"claim_id": "C-1"})])
    r = await demo_client.post(client, "/v1/pension-claims", json={"claim": 1})
    assert r.status_code == 202 and len(seen) == 3
    assert waits == [0.25, demo_client.MIN_WAIT_S]  # never a busy loop on a 0.00 s retry_after
    assert all(req.content == seen[0].content for req in seen)  # the same request each time


async def test_an_answer_of_another_shape_is_waited_out_by_its_header(waits: list[float]) -> None:
    answers = [httpx.Response(503, json=["down"], headers={"Retry-After": "3"}), httpx.Response(202)]
    client, _ = _gateway(answers)
    assert (await demo_client.post(client, "/v1/declarations")).status_code == 202
    assert waits == [3.0]


async def test_a_503_is_waited_out_by_its_retry_after_header(waits: list[float]) -> None:
    client, seen = _gateway(
        [httpx.Response(503, text="down", headers={"Retry-After": "2"}), httpx.Response(202)]
    )
    assert (await demo_client.post(client, "/v1/declarations")).status_code == 202
    assert waits == [2.0] and len(seen) == 2


async def test_other_answers_are_returned_at_once(waits: list[float]) -> None:
    client, seen = _gateway([httpx.Response(422, json={"status": 422})])
    assert (await demo_client.post(client, "/v1/declarations")).status_code == 422
    assert waits == [] and len(seen) == 1


async def test_it_gives_up_after_its_tries_with_the_last_answer(waits: list[float]) -> None:
    client, seen = _gateway([_too_many(0.1)])
    assert (await demo_client.post(client, "/v1/pension-claims")).status_code == 429
    assert len(seen) == demo_client.MAX_TRIES and len(waits) == demo_client.MAX_TRIES - 1
