"""docker-compose.yml parses and names every service (it cannot run here: no Docker engine)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NOT_SERVICES = {"rules", "common", "cli", "demo", "migrations", "__pycache__"}


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
