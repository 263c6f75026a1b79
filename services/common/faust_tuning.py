"""faust, tuned for stream processors that take their input in batches.

Measured on the national month (57,750 declarations), faust's own cost per event was about
a third of the assessment's CPU. Two parts of it do nothing for a batch agent:

- the consumer's drain loop hands each fetched record to the topic's channel under
  `wait_first(callback(message), suspend_flow.wait())`, i.e. four tasks and an
  `asyncio.wait` per record. `BatchDrainConsumer` delivers each fetch (up to
  `broker_max_poll_records` records) under one such wait instead: a rebalance (flow
  suspended) still cancels the delivery at once, and what was not delivered is fetched
  again from the committed offsets, as before.
- a batch agent (`install_batch_agent`) then took them from its channel one event at a
  time (an Event, a queue put and get, a stream step each). For its topic the consumer now
  puts each fetch whole on the agent's queue (`batch_queues`, `put_batch`), and the agent
  tracks and acknowledges the messages as faust's stream would (`take`).
- the default Monitor sensor records every message and stream event in memory for faust's
  own web pages, which Kalo does not serve (Prometheus has what Kalo reads). `QuietMonitor`
  keeps the monitor's other duties (commits, rebalances, web requests) and drops the
  per-event records.

Acknowledgements, commits and rebalances are faust's own: a message is acknowledged once the
agent's batch is processed, committed offsets never pass an unacknowledged one, and a
rebalance clears the agent's queue as it clears faust's own buffers.

One change of meaning: faust reads uncommitted records unless its own producer is
transactional. Kalo's stream processors read committed records only, as its tracked
consumers do: a record of an aborted transaction (a `kalo dlq replay` that failed between
the record and its audit record) is never assessed or liquidated.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service


class QuietMonitor(Monitor):  # type: ignore[misc]
    """The Monitor without its per-message and per-event records."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: dict[str, Any] | None = None
    ) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        pass


class CommittedReadsThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """faust's consumer thread, its aiokafka consumer reading committed records only."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust passes read_uncommitted unless it produces in transactions; aiokafka reads
        # this at start(), which has not run yet (the thread starts it right after).
        consumer._isolation_level = READ_COMMITTED
        return consumer


READ_COMMITTED = "read_committed"


class BatchDrainConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """faust's aiokafka consumer, delivering each fetch to the channels under one wait,
    reading committed records only."""

    def _new_consumer_thread(self) -> CommittedReadsThread:
        return CommittedReadsThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - faust's loop
        callback = self.callback
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for

        queues = batch_queues(self.app)
        acquire_flow_control = self.app.flow_control.acquire

        async def deliver(fetched: list[tuple[Any, Any]]) -> None:
            batches: dict[str, list[Any]] = {}
            for tp, message in fetched:
                offset = message.offset
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    commit_every = self._commit_every
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in queues:
                        batches.setdefault(message.topic, []).append(message)
                    else:
                        await callback(message)
                    # As faust does once its callback has queued the event: a batch dropped
                    # by a rebalance is fetched again, since the assignment seeks (and sets
                    # these) back to the committed offsets.
                    set_read_offset(tp, offset)
            for name, messages in batches.items():
                await acquire_flow_control()
                if not await put_batch(queues[name], messages):
                    return

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = [item async for item in self.getmany(timeout=1.0)]
                await asyncio.sleep(0)
                if fetched and not self.should_stop:
                    await self.wait_first(deliver(fetched), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


def batch_queues(app: Any) -> dict[str, Any]:
    """Per topic, the queue of fetched batches a batch agent takes (`install_batch_agent`);
    the consumer puts each fetch of those topics there whole, not event by event."""
    queues: dict[str, Any] | None = getattr(app, "_kalo_batch_queues", None)
    if queues is None:
        queues = {}
        app._kalo_batch_queues = queues
    return queues


async def put_batch(queue: Any, messages: list[Any]) -> bool:
    """Put a fetched batch on its agent's queue, waiting while the queue is full. False: a
    rebalance cleared the queue meanwhile, and with it this waiting put (faust's queue cancels
    its waiting putters): the batch is dropped as the queue's were, and fetched again from the
    committed offsets once the partitions are assigned. (Raising there, as the put does, crashed
    the worker's fetcher.) A cancellation of the delivery itself still propagates."""
    try:
        await queue.put(messages)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return False
    return True


def take(app: Any, fetched: list[Any]) -> list[Any]:
    """The messages of a fetched batch to process now, tracked as faust's stream tracks the
    events it yields: none while a rebalance holds the flow, none fetched before the last
    rebalance (fetched again from the committed offsets). A tracked message is waited for
    (acknowledged) before the offsets are committed on a rebalance or a stop."""
    if not app.flow_control.is_active():
        return []
    generation = app.consumer_generation_id
    consumer = app.consumer
    messages = [m for m in fetched if m.generation_id == generation]
    for message in messages:
        message.tracked = True
        consumer.track_message(message)
    return messages


class BatchTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = BatchDrainConsumer
