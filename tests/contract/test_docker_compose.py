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
