"""The control commission's Prometheus metrics (served on KALO_CONTROL_METRICS_PORT)."""

from prometheus_client import Counter, Gauge

from services.common.http_metrics import http_metrics
from services.common.metrics import stream_metrics

LIQUIDATIONS = Counter(
    "kalo_control_liquidations_total",
    "Liquidations received by the control, by status on arrival (approved: automatically)",
    ["status"],
)
FLAGS = Counter("kalo_control_flags_total", "RULES.md §4 flags raised on arrival, by code", ["code"])
DECISIONS = Counter(
    "kalo_control_decisions_total", "Controllers' decisions recorded, by decision", ["decision"]
)
REFUSED = Counter(
    "kalo_control_refused_total", "Decisions refused by a rule of the four eyes, by rule", ["rule"]
)
ESCALATED = Gauge(
    "kalo_control_escalated",
    "Liquidations pending longer than the legal delay to answer (RULES.md §4 ESCALATED)",
)
PENDING = Gauge("kalo_control_pending", "Liquidations waiting for controllers")
OUTBOX_PENDING = Gauge("kalo_control_outbox_pending", "Control messages not yet published to Kafka")
OUTBOX_PUBLISHED = Counter(
    "kalo_control_outbox_published_total", "Control messages published to Kafka by the relay"
)
STREAM = stream_metrics("control", end_to_end="from the claim's receipt to the control's decision")
HTTP = http_metrics("control")
