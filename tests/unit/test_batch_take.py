"""What a batch agent takes from a fetched batch (services.common.faust_tuning.take): nothing
while a rebalance holds the flow, nothing fetched before the last rebalance, and every
message it takes tracked, so that a rebalance or a stop waits for its acknowledgement before
committing past it. The whole path runs on the real stack in the integration tests (two
workers sharing partitions, SIGKILL, faults under load)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.faust_tuning import batch_queues, take


@dataclass
class FakeMessage:
    offset: int
    generation_id: int
    tracked: bool = False


@dataclass
class FakeFlow:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class FakeConsumer:
    tracked: list[Any] = field(default_factory=list)

    def track_message(self, message: Any) -> None:
        self.tracked.append(message)


@dataclass
class FakeApp:
    consumer_generation_id: int = 3
    flow_control: FakeFlow = field(default_factory=FakeFlow)
    consumer: FakeConsumer = field(default_factory=FakeConsumer)


def test_the_current_generation_is_taken_and_tracked() -> None:
    app = FakeApp()
    fetched = [FakeMessage(10, 3), FakeMessage(11, 2), FakeMessage(12, 3)]
    taken = take(app, fetched)
    assert [m.offset for m in taken] == [10, 12]  # 11 was fetched before the last rebalance
    assert all(m.tracked for m in taken) and not fetched[1].tracked
    assert app.consumer.tracked == taken


def test_nothing_is_taken_while_a_rebalance_holds_the_flow() -> None:
    app = FakeApp(flow_control=FakeFlow(active=False))
    fetched = [FakeMessage(10, 3)]
    assert take(app, fetched) == []
    assert app.consumer.tracked == [] and not fetched[0].tracked


def test_each_app_has_its_own_queues() -> None:
    first, second = FakeApp(), FakeApp()
    batch_queues(first)["t"] = "queue"
    assert batch_queues(first) == {"t": "queue"}
    assert batch_queues(second) == {}


def test_a_stream_app_runs_on_uvloop_even_once_its_batch_agent_is_installed(tmp_path: Any) -> None:
    """faust keeps the loop it first asks for: installing the batch agent asks for one (its
    queue), so the policy must be uvloop's before the app is built, not only when it runs."""
    import asyncio

    import uvloop

    from services.common.faust_runtime import install_batch_agent, stream_app
    from services.common.settings import Settings

    asyncio.set_event_loop_policy(None)  # the default policy, as a fresh process has it
    try:
        settings = Settings(data_dir=str(tmp_path), topic_prefix="unit.")
        app = stream_app(settings, "unit", web_port=6099, batch=10)  # built, never started

        async def process(messages: list[Any]) -> None:
            pass

        install_batch_agent(app, "unit.source", batch=10, consumed=lambda r: r, process=process)
        assert isinstance(app.loop, uvloop.Loop)
    finally:
        asyncio.set_event_loop_policy(None)


async def test_a_put_waiting_on_a_full_queue_that_a_rebalance_clears_drops_its_batch() -> None:
    """faust clears its queues on a rebalance and cancels the puts waiting on them: the fetch
    waiting there is dropped (fetched again later), not raised (it crashed the fetcher)."""
    import asyncio

    from mode.utils.queues import FlowControlEvent, ThrowableQueue

    from services.common.faust_tuning import put_batch

    queue: ThrowableQueue[Any] = ThrowableQueue(
        maxsize=1, flow_control=FlowControlEvent(initially_suspended=False)
    )
    assert await put_batch(queue, ["first"])
    waiting = asyncio.create_task(put_batch(queue, ["second"]))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    queue.clear()  # what faust's flow control does on a rebalance
    assert await waiting is False
    assert queue.empty()


async def test_a_cancelled_delivery_is_still_cancelled() -> None:
    import asyncio

    import pytest
    from mode.utils.queues import FlowControlEvent, ThrowableQueue

    from services.common.faust_tuning import put_batch

    queue: ThrowableQueue[Any] = ThrowableQueue(
        maxsize=1, flow_control=FlowControlEvent(initially_suspended=False)
    )
    await put_batch(queue, ["first"])
    waiting = asyncio.create_task(put_batch(queue, ["second"]))
    await asyncio.sleep(0.01)
    waiting.cancel()  # the delivery itself (faust's wait_first on a stop or a suspended flow)
    with pytest.raises(asyncio.CancelledError):
        await waiting
