"""The audit store's Prometheus metrics (served on KALO_AUDIT_METRICS_PORT, /metrics)."""

from prometheus_client import Counter, Gauge

from services.common.metrics import stream_metrics

RECORDS = Counter("kalo_audit_records_total", "Records appended to the audit log")
HEADS_SIGNED = Counter("kalo_audit_heads_signed_total", "Tree heads signed")
TREE_SIZE = Gauge("kalo_audit_tree_size", "Records in the audit log (its latest tree size)")
CHAIN_OK = Gauge(
    "kalo_audit_chain_ok",
    "1 while the root recomputed from the stored records at the latest signed head's size "
    "equals that head's root; 0 when not (checked at each head)",
)
STREAM = stream_metrics("audit")
