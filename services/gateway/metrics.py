"""The gateway's Prometheus metrics (served on its own port, /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

from services.common.http_metrics import http_metrics

RECEIPTS = Counter("kalo_gateway_receipts_total", "Declarations and claims received, by channel", ["channel"])
RECEIPT_SECONDS = Histogram(
    "kalo_gateway_receipt_seconds",
    "From a parsed declaration to its committed receipt, by channel",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTBOX_PENDING = Gauge("kalo_gateway_outbox_pending", "Receipts not yet published to Kafka")
OUTBOX_PUBLISHED = Counter(
    "kalo_gateway_outbox_published_total", "Outbox messages published to Kafka by the relay"
)
PROBLEMS = Counter("kalo_gateway_problems_total", "Requests answered with a problem, by status", ["status"])
HTTP = http_metrics("gateway")
