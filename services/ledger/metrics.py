"""The ledger's Prometheus metrics (served on KALO_LEDGER_METRICS_PORT, /metrics)."""

from services.common.metrics import stream_metrics

STREAM = stream_metrics("ledger", end_to_end="from the gateway's receipt to the declaration projected")
