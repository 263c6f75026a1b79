"""Prometheus metrics shared by the services (each process serves its own /metrics)."""

import asyncio
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

DECLARATIONS = Counter("kalo_declarations_total", "Declarations assessed, by outcome", ["status"])
LINES = Counter("kalo_declaration_lines_total", "Declaration lines assessed, by outcome", ["status"])
REJECTIONS = Counter("kalo_declaration_errors_total", "Business validation errors, by code", ["code"])
CONTRIBUTIONS = Counter(
    "kalo_contributions_francs_total",
    "Contributions assessed (XOF), by branch and fund",
    ["branch", "fund"],
)
PROCESSING = Histogram(
    "kalo_processing_seconds",
    "Time to process one batch of messages",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END = Histogram(
    "kalo_end_to_end_seconds",
    "From the gateway's receipt to this stage",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
LIQUIDATIONS = Counter(
    "kalo_liquidations_total", "Pension claims liquidated, by regime and decision", ["regime", "decision"]
)
DLQ = Counter("kalo_dlq_messages_total", "Messages sent to the dead-letter topic", ["service", "topic"])
LAG = Gauge("kalo_consumer_lag", "Messages not yet consumed", ["service", "topic", "partition"])
RECEIPTS = Counter("kalo_receipts_total", "Declarations received by the gateway", ["channel"])
OUTBOX_PENDING = Gauge("kalo_outbox_pending", "Receipts not yet published to Kafka")
RECEIPT_SECONDS = Histogram(
    "kalo_gateway_receipt_seconds",
    "Gateway: from a parsed declaration to its committed receipt, by channel",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTBOX_PUBLISHED = Counter("kalo_outbox_published_total", "Outbox messages published to Kafka by the relay")
GATEWAY_PROBLEMS = Counter(
    "kalo_gateway_problems_total", "Gateway requests answered with a problem (4xx), by status", ["status"]
)


async def observe_lag(service: str, consumer: Any) -> None:
    """kalo_consumer_lag of every partition assigned to `consumer` (aiokafka's or faust's:
    both have assignment, highwater and position), leaving out Kafka's and faust's internal
    topics. Unknown positions (revoked meanwhile, Kafka away) are left for the next call."""
    for tp in consumer.assignment():
        if tp.topic.startswith("__"):
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
        except Exception:
            continue
        if position is not None:
            LAG.labels(service, tp.topic, str(tp.partition)).set(max(highwater - position, 0))
