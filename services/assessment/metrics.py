"""The assessment's Prometheus metrics (served on its faust web port, /metrics)."""

from prometheus_client import Counter

from services.common.metrics import stream_metrics

DECLARATIONS = Counter("kalo_assessment_declarations_total", "Declarations assessed, by outcome", ["status"])
LINES = Counter("kalo_assessment_lines_total", "Declaration lines assessed, by outcome", ["status"])
ERRORS = Counter("kalo_assessment_errors_total", "Business validation errors, by code", ["code"])
CONTRIBUTIONS = Counter(
    "kalo_assessment_contributions_francs_total",
    "Contributions assessed (XOF), by branch and fund",
    ["branch", "fund"],
)
STREAM = stream_metrics("assessment", end_to_end="from the gateway's receipt to the declaration assessed")
