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
