"""Prometheus' configs and Kalo's alert rules: promtool accepts both configs and every rule
file they load, the rules' unit tests (deploy/prometheus/tests) pass, every alert is tested
firing and quiet and says what to do, and the rules read only what the services export."""

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from services.common.settings import Settings
from tests.support.promql import PROMETHEUS, ROOT, exported, parse, scrape_jobs, unknown_labels, unknown_names

RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
CONFIGS = ("prometheus.yml", "prometheus.docker.yml")
PORTS = {
    "gateway": "gateway_port",
    "assessment": "assessment_web_port",
    "liquidation": "liquidation_web_port",
    "ledger": "ledger_metrics_port",
    "control": "control_metrics_port",
    "audit": "audit_metrics_port",
}


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_both_configs_and_every_rule_file(promtool: Path) -> None:
    done = run(promtool, "check", "config", "--lint=all", "--lint-fatal", *CONFIGS)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert RULES, "no rule files in deploy/prometheus/rules"
    for path in RULES:
        assert out.count(f"Checking rules/{path.name}") == len(CONFIGS), (
            f"{path.name} not loaded by both configs"
        )


def test_promtool_unit_tests_of_the_rules_pass(promtool: Path) -> None:
    done = run(promtool, "test", "rules", *(str(p.relative_to(PROMETHEUS)) for p in RULE_TESTS))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.count("SUCCESS") == len(RULE_TESTS) >= 1, out


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts(), "no alert rules"
    assert set(alerts()) - fired == set(), "never seen firing in deploy/prometheus/tests"
    assert set(alerts()) - quiet == set(), "never seen quiet in deploy/prometheus/tests"


def readme_anchors() -> set[str]:
    """GitHub's anchors of the README's headings."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    anchors = readme_anchors()
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        runbook = re.fullmatch(r"README\.md#([\w-]+)", notes["runbook_url"])
        assert runbook, f"{name}: runbook_url must be README.md#anchor"
        assert runbook[1] in anchors, f"{name}: no heading in README.md for #{runbook[1]}"


def test_rules_read_only_the_exported_metrics_and_their_labels() -> None:
    recorded: dict[str, set[str]] = {}  # a recorded series' labels: those it groups by, its own, its inputs'
    for rule in rules():
        if "record" in rule:
            query = parse(rule["expr"])
            labels = query.grouping | set(rule.get("labels", {}))
            labels.update(*(recorded.get(s.name, set()) for s in query.selectors))
            recorded.setdefault(rule["record"], set()).update(labels)
    known = set(exported()) | set(recorded)
    for rule in rules():
        query = parse(rule["expr"])
        what = rule.get("alert") or rule["record"]
        assert query.selectors or "record" in rule, what
        assert unknown_names(query, known) == set(), what
        assert unknown_labels(query, recorded) == set(), what


def scrape(config: str) -> dict[str, list[str]]:
    loaded = yaml.safe_load((PROMETHEUS / config).read_text())
    assert loaded["rule_files"] == ["rules/*.yml"], config
    return {job["job_name"]: job["static_configs"][0]["targets"] for job in loaded["scrape_configs"]}


def test_both_configs_scrape_every_service_on_its_port() -> None:
    ports = {job: Settings.model_fields[setting].default for job, setting in PORTS.items()}
    assert set(PORTS) == scrape_jobs()
    assert scrape("prometheus.yml") == {job: [f"127.0.0.1:{port}"] for job, port in ports.items()}
    assert scrape("prometheus.docker.yml") == {job: [f"{job}:{port}"] for job, port in ports.items()}


def test_compose_prometheus_loads_the_rules_beside_its_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.docker.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in volumes
