"""The liquidation's Prometheus metrics (served on its faust web port, /metrics)."""

from prometheus_client import Counter

from services.common.metrics import stream_metrics

LIQUIDATIONS = Counter(
    "kalo_liquidation_liquidations_total",
    "Pension claims liquidated, by regime and decision",
    ["regime", "decision"],
)
STREAM = stream_metrics("liquidation", end_to_end="from the claim's receipt to its liquidation")
