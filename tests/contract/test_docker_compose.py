"""docker-compose.yml parses and names every service (it cannot run here: no Docker engine)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NOT_SERVICES = {"rules", "common", "cli", "demo", "replay", "migrations", "__pycache__"}


def test_compose_parses_and_names_every_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    folders = {p.name for p in (ROOT / "services").iterdir() if p.is_dir()} - NOT_SERVICES
    assert folders, "no service folders found"
    missing = folders - set(services)
    assert not missing, f"docker-compose.yml lacks {missing}"
    for name in folders:
        assert services[name]["command"][-1] == name, f"{name} must start with `kalo run {name}`"
    for infra in ("kafka", "postgres", "prometheus", "grafana"):
        assert infra in services


def test_compose_gives_each_service_its_own_database_role_only() -> None:
    """The services' DSN carries no credentials; each holds its own role's password and
    nobody else's; only the migrate job (which sets them) knows the admin's and all of them."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    roles = ("gateway", "assessment", "ledger", "liquidation", "control")
    for name in roles:
        env = services[name]["environment"]
        assert "@" not in env["KALO_DATABASE_URL"], f"{name} is given the admin's credentials"
        passwords = {k for k in env if k.endswith("_DB_PASSWORD")}
        assert passwords == {f"KALO_{name.upper()}_DB_PASSWORD"}, name
        assert env.get("KALO_DB_ROLES", "true") == "true", name
    migrate = services["migrate"]["environment"]
    assert {f"KALO_{name.upper()}_DB_PASSWORD" for name in roles} <= set(migrate)


# The port each service answers /ready on (the control commission: its metrics port).
READY_PORTS = {
    "gateway": 8080,
    "assessment": 6066,
    "liquidation": 6067,
    "ledger": 9101,
    "control": 9102,
    "audit": 9103,
}


def compose_services() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_kafka_writes_its_data_on_its_volume() -> None:
    kafka = compose_services()["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounted = {v.split(":")[1] for v in kafka["volumes"]}
    assert log_dirs in mounted, f"KAFKA_LOG_DIRS={log_dirs} is not on a volume ({mounted})"


def test_every_service_waits_for_the_migration_and_for_healthy_kafka_and_postgres() -> None:
    services = compose_services()
    for name in READY_PORTS:
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["kafka"] == {"condition": "service_healthy"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
    assert services["migrate"]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_every_service_is_healthy_only_when_its_ready_endpoint_answers() -> None:
    services = compose_services()
    for name, port in READY_PORTS.items():
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: asked with Python (the image has no curl)"
        assert "urllib.request.urlopen" in test[3], name
        assert f"http://127.0.0.1:{port}/ready" in test[3], name
        compile(test[3], name, "exec")  # the probe is Python that parses
    for infra in ("kafka", "postgres"):
        assert services[infra]["healthcheck"]["test"], infra
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_the_ready_ports_are_the_settings_defaults() -> None:
    from services.common.settings import Settings

    fields = {
        "gateway": "gateway_port",
        "assessment": "assessment_web_port",
        "liquidation": "liquidation_web_port",
        "ledger": "ledger_metrics_port",
        "control": "control_metrics_port",
        "audit": "audit_metrics_port",
    }
    assert {name: Settings.model_fields[field].default for name, field in fields.items()} == READY_PORTS


def test_every_kalo_port_is_opened_inside_its_container() -> None:
    services = compose_services()
    for name in (*READY_PORTS, "migrate"):
        assert services[name]["environment"]["KALO_BIND_HOST"] == "0.0.0.0", name
