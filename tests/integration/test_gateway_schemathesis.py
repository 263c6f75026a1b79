"""Schemathesis against the live gateway: generated requests from the OpenAPI document
(valid and invalid) never get a 5xx. Bounded: a few hundred examples, well under a minute.

A config file binds the generated employer and declaration ids to real ones most of the
time, so that requests get past authorisation into the handlers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from services.gateway.registry import add_staff_key
from tests.integration.conftest import Stack
from tests.integration.helpers import auth, declaration, inps_line, register_employer

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = """
[dictionaries.employers]
values = ["{employer}"]
[dictionaries.declarations]
values = ["{declaration}"]
[parameters]
"body.employer.id" = {{ dictionary = "employers", probability = 0.9 }}
"path.employer_id" = {{ dictionary = "employers", probability = 0.9 }}
"query.employer" = {{ dictionary = "employers", probability = 0.5 }}
"path.declaration_id" = {{ dictionary = "declarations", probability = 0.9 }}
"""


def run_schemathesis(stack: Stack, config: Path, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(config),
            "run",
            f"{stack.gateway_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--max-time",
            "10",
            "--seed",
            "7",
            "--header",
            f"Authorization: Bearer {key}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,  # its cache (.schemathesis/) stays out of the repository
    )


async def test_no_generated_request_gets_a_server_error(services: Stack, db: Any, tmp_path: Path) -> None:
    employer_id, employer_key = await register_employer(db)
    async with httpx.AsyncClient(base_url=services.gateway_url) as client:
        r = await client.post(
            "/v1/declarations",
            json=declaration(employer_id, [inps_line("W1", 1)]),
            headers=auth(employer_key),
        )
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(employer=employer_id, declaration=r.json()["declaration_id"]))
    result = run_schemathesis(services, config, employer_key)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Test cases:" in result.stdout and " passed" in result.stdout
    # Staff reach other branches of the read routes (any employer, filters).
    backoffice = await add_staff_key(db, role="backoffice", label="schemathesis")
    result = run_schemathesis(services, config, backoffice, "--include-method", "GET")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(result.stdout[-3000:])
