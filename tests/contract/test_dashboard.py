"""The Grafana dashboard (deploy/grafana/dashboards/kalo.json) is one an operator can use:
the data source, job and instance are variables every panel follows; every query parses (by
Prometheus' grammar, and by promtool itself), reads only metrics the services export, takes
its rates over $__rate_interval and plots no raw counter; every panel says what it shows, in
a unit that fits; one row per service and one for the objectives, drawn at the values the
alert rules hold."""

import json
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promql import PROMETHEUS, ROOT, Query, exported, parse, scrape_jobs, unknown_labels

DASHBOARD = ROOT / "deploy/grafana/dashboards/kalo.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# $__rate_interval is Grafana's, not PromQL: a duration no query would write stands for it.
RATE_INTERVAL, RATE_INTERVAL_AS_PROMQL = timedelta(hours=1, minutes=2, seconds=3), "1h2m3s"
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
UNITS = {"s", "reqps", "ops", "percentunit", "short", "none", "bytes"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def rows() -> list[tuple[str, list[dict[str, Any]]]]:
    """(row title, its panels), in order; an open row's panels follow it, a collapsed one holds them."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            out.append((panel["title"], list(panel.get("panels", []))))
        else:
            assert out, f"panel {panel['title']!r} is above every row"
            out[-1][1].append(panel)
    return out


def panels() -> list[dict[str, Any]]:
    return [panel for _, row in rows() for panel in row]


def promql(expr: str) -> str:
    """The query as Prometheus receives it: $__rate_interval replaced; any other variable may
    only stand inside a label matcher's string, and must be one of the dashboard's."""
    names = {v["name"] for v in dashboard()["templating"]["list"]}
    for braced, plain in VARIABLE.findall(expr.replace("$__rate_interval", "")):
        assert (braced or plain) in names, f"{expr}: ${braced or plain} is not a variable of the dashboard"
    return expr.replace("$__rate_interval", RATE_INTERVAL_AS_PROMQL)


def queries() -> list[tuple[dict[str, Any], str, Query]]:
    out = []
    for panel in panels():
        for target in panel["targets"]:
            out.append((panel, target["expr"], parse(promql(target["expr"]))))
    assert out, "the dashboard plots nothing"
    return out


def test_the_data_source_the_job_and_the_instance_are_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, reads in (
        ("job", r"label_values\(up, job\)"),
        ("instance", r'label_values\(up\{job=~"\$job"\}, instance\)'),
    ):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE, name
        assert re.fullmatch(reads, variable["query"]["query"]), name
        assert variable["multi"] and variable["includeAll"], name


def test_every_panel_reads_the_chosen_data_source() -> None:
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


def test_every_panel_has_a_description_and_a_unit() -> None:
    for panel in panels():
        assert len(panel.get("description", "").strip()) >= 20, f"{panel['title']}: no description"
        assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, f"{panel['title']}: unit"


def test_every_query_reads_only_exported_metrics_filtered_by_job_and_instance() -> None:
    known = set(exported())
    for panel, expr, query in queries():
        assert query.selectors, expr
        assert {s.name for s in query.selectors} <= known, f"{panel['title']}: not exported: {expr}"
        assert unknown_labels(query) == set(), f"{panel['title']}: {expr}"
        for selector in query.selectors:
            assert selector.values("job", "=~") == ["$job"], f"{panel['title']}: {expr}"
            assert selector.values("instance", "=~") == ["$instance"], f"{panel['title']}: {expr}"


def test_every_range_is_the_rate_interval() -> None:
    for panel, expr, query in queries():
        assert "$__interval" not in expr and "$__range" not in expr, expr
        assert all(r == RATE_INTERVAL for r in query.ranges), f"{panel['title']}: {expr}"


def test_no_counter_is_plotted_raw() -> None:
    series = exported()
    for panel, expr, query in queries():
        for name in {s.name for s in query.selectors if series[s.name].cumulative}:
            read = sum(s.name == name for s in query.selectors)
            assert query.ranged.count(name) == read, (
                f"{panel['title']}: {name} plotted without rate(): {expr}"
            )


def fitting_units(expr: str, query: Query) -> set[str]:
    names = {s.name for s in query.selectors}
    series = exported()
    if expr.startswith("histogram_quantile("):
        return {"s"} if all(series[n].family.endswith("_seconds") for n in names) else UNITS
    if any("francs" in n for n in names):
        return {"none"}  # francs CFA: Grafana's currency units would show another currency
    if names == {"process_cpu_seconds_total"}:
        return {"percentunit"}  # CPU seconds per second: 1 = one core
    if " / " in expr:
        return {"percentunit"}
    if all(series[n].cumulative for n in names):
        return {"reqps", "ops"}
    if names <= {"up", "kalo_audit_chain_ok"}:
        return {"none"}  # a state, shown through value mappings
    if all(n.endswith("_bytes") for n in names):
        return {"bytes"}
    return {"short"}


def test_units_fit_what_is_plotted() -> None:
    for panel, expr, query in queries():
        unit = panel["fieldConfig"]["defaults"]["unit"]
        assert unit in fitting_units(expr, query), f"{panel['title']}: {unit} for {expr}"


def service_of(panel: dict[str, Any]) -> set[str]:
    """The jobs whose metrics the panel reads (process_* and up: the job its matcher names)."""
    jobs: set[str] = set()
    for target in panel["targets"]:
        for selector in parse(promql(target["expr"])).selectors:
            own = exported()[selector.name].jobs
            named = set(selector.values("job", "="))
            assert own or len(named) == 1, (
                f'{panel["title"]}: {selector.name} needs job="…" in a service\'s row'
            )
            jobs |= own | named
    return jobs


def objectives() -> dict[str, tuple[str, float]]:
    """slo → (the histogram its p99 reads, the objective in seconds), from the rules."""
    rules = yaml.safe_load((PROMETHEUS / "rules/objectives.yml").read_text())["groups"][0]["rules"]
    values = {
        r["labels"]["slo"]: float(r["expr"].strip()[len("vector(") : -1])
        for r in rules
        if r.get("record") == "slo:latency_objective_seconds"
    }
    reads = {
        r["labels"]["slo"]: exported()[parse(r["expr"]).selectors[0].name].family
        for r in rules
        if r.get("record") == "slo:latency_p99_seconds:rate5m"
    }
    assert values and set(values) == set(reads)
    return {slo: (reads[slo], values[slo]) for slo in values}


def test_one_row_for_the_objectives_then_one_per_service() -> None:
    (first, _), *services = rows()
    assert first.startswith("Objectives")
    seen = []
    for title, row in services:
        jobs = set().union(*(service_of(p) for p in row))
        assert len(jobs) == 1, f"row {title!r} mixes {jobs}"
        seen += jobs
    assert sorted(seen) == sorted(scrape_jobs()), "one row per scrape job"


def test_the_objective_panels_draw_the_objectives_of_the_rules() -> None:
    _, row = rows()[0]
    drawn = {}
    for panel in row:
        (target,) = panel["targets"]
        assert target["expr"].startswith("histogram_quantile(0.99, "), panel["title"]
        family = exported()[parse(promql(target["expr"])).selectors[0].name].family
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["color"] == "red", panel["title"]
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off", panel["title"]
        drawn[family] = steps[-1]["value"]
    assert drawn == {family: value for family, value in objectives().values()}


def test_grafana_knows_the_scrape_interval() -> None:
    """$__rate_interval is four scrape intervals at least, if Grafana knows the interval."""
    (source,) = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.docker.yml").read_text())["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


def test_prometheus_itself_parses_every_query(promtool: Path, tmp_path: Path) -> None:
    """promtool check rules parses each expr with Prometheus' own parser."""
    exprs = [promql(expr) for _, expr, _ in queries()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [str(promtool), "check", "rules", "dashboard.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


@pytest.mark.parametrize(
    "bad", ["rate(kalo_gateway_receipts_total[5m]", 'kalo_gateway_receipts_total{job=~"$nope"}']
)
def test_a_broken_query_is_refused(bad: str) -> None:
    with pytest.raises((ValueError, AssertionError)):
        parse(promql(bad))


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
