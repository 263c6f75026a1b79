"""The shapes of Prometheus metrics every consuming service has (lag, batch time, dead letters,
end-to-end latency), made per service by `stream_metrics`.

No family is defined here at import: each service defines its own in its own `metrics`
module, every name `kalo_<service>_…`, so that a process exports its own families only and
no family comes from two services. Shared code (the DLQ, the tracked consumer, faust's lag
timer) is handed the service's `StreamMetrics` and writes into that service's families.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# service → the module that defines its families (named, not imported: a process imports its
# own only). Tools that need every family (the dashboard's test) import them all.
SERVICE_METRICS = {
    "gateway": "services.gateway.metrics",
    "assessment": "services.assessment.metrics",
    "ledger": "services.ledger.metrics",
    "liquidation": "services.liquidation.metrics",
    "control": "services.control.metrics",
    "audit": "services.control.audit.metrics",
}
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class StreamMetrics:
    service: str
    lag: Gauge  # kalo_<service>_consumer_lag{topic,partition}
    dlq: Counter  # kalo_<service>_dlq_messages_total{topic}
    batch: Histogram  # kalo_<service>_batch_seconds
    end_to_end: Histogram | None  # kalo_<service>_end_to_end_seconds (None: no such stage)


_MADE: dict[str, StreamMetrics] = {}


def stream_metrics(service: str, *, end_to_end: str | None = None) -> StreamMetrics:
    """The consumer families of `service` (made once per process: a second call, e.g. an app
    built twice in the tests, returns the same ones). `end_to_end`: what the end-to-end
    histogram measures ("gateway receipt → assessed"), or None for a service without one."""
    made = _MADE.get(service)
    if made is not None:
        return made
    prefix = f"kalo_{service}"
    made = StreamMetrics(
        service=service,
        lag=Gauge(f"{prefix}_consumer_lag", f"{service}: messages not yet consumed", ["topic", "partition"]),
        dlq=Counter(f"{prefix}_dlq_messages_total", f"{service}: messages sent to kalo.dlq", ["topic"]),
        batch=Histogram(
            f"{prefix}_batch_seconds", f"{service}: time to process one batch", buckets=LATENCY_BUCKETS
        ),
        end_to_end=None
        if end_to_end is None
        else Histogram(f"{prefix}_end_to_end_seconds", f"{service}: {end_to_end}", buckets=LATENCY_BUCKETS),
    )
    _MADE[service] = made
    return made


def internal_topic(name: str) -> bool:
    """Kafka's and faust's own topics (offsets, the assignor's leader, table changelogs),
    which are no work of the service and are left out of its lag."""
    return name.startswith("__") or name.endswith("-__assignor-__leader") or name.endswith("-changelog")


async def observe_lag(stream: StreamMetrics, consumer: Any) -> None:
    """The lag of every partition assigned to `consumer` (aiokafka's or faust's: both have
    assignment, highwater and position), internal topics left out. Unknown positions
    (revoked meanwhile, Kafka away) are left for the next call."""
    for tp in list(consumer.assignment()):
        if internal_topic(tp.topic):
            continue
        try:
            # aiokafka asserts the partition is still assigned: a rebalance during the awaits
            # below revokes the rest of this list (it stopped the ledger once, AssertionError).
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
        except Exception:
            continue
        if position is not None:
            stream.lag.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))
