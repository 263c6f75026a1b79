"""The Grafana dashboard only plots metrics that the services really export."""

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import services.common.metrics  # noqa: F401 - registers every Kalo metric

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_bucket", "_sum", "_count", "_total")


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("kalo_"):
            names.add(family.name)
            names.update(family.name + s for s in SUFFIXES)
    return names


def test_every_dashboard_metric_is_exported() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/kalo.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\bkalo_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard plots nothing"
    assert used <= exported(), f"not exported by any service: {sorted(used - exported())}"
