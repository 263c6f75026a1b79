"""The Dockerfile installs the wheel it builds, with the lock file's versions (it cannot run here: no
Docker engine). The e2e test tests/e2e/test_wheel.py builds the wheel from the build stage's files."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def stages() -> list[list[str]]:
    """The instructions of each stage, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def build_stage_sources() -> list[str]:
    """What the build stage copies from the context (the e2e test builds the wheel from just these)."""
    build = stages()[0]
    sources: list[str] = []
    for line in build:
        if line.upper().startswith("COPY ") and "--from" not in line:
            sources.extend(line.split()[1:-1])
    return sources


def test_a_build_stage_and_a_runtime_stage() -> None:
    build, runtime = stages()
    assert " AS " in build[0].upper()
    assert any("build --wheel" in line for line in build)
    copies = [line for line in runtime if line.upper().startswith(("COPY", "ADD"))]
    # From the context only the lock file; the code comes as the wheel of the build stage.
    assert [c.split()[1] for c in copies if "--from" not in c] == ["requirements.lock"]
    assert any("--from=build" in c and "/dist" in c for c in copies)
    runs = " ".join(line for line in runtime if line.upper().startswith("RUN "))
    assert "-r /tmp/requirements.lock" in runs
    assert "--no-deps /tmp/dist/kalo-" in runs
    assert "-e " not in runs and " -e." not in runs


def test_the_image_runs_what_compose_asks() -> None:
    """compose gives each service its command (`kalo run NAME`, `sh -c …`): no entrypoint in the way."""
    runtime = stages()[-1]
    assert not [line for line in runtime if line.upper().startswith("ENTRYPOINT")]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = [s["command"] for s in compose["services"].values() if s.get("build") == "."]
    assert commands and all(c[0] in ("kalo", "sh") for c in commands)


def test_the_build_stage_copies_what_the_wheel_is_built_from() -> None:
    sources = build_stage_sources()
    assert {"pyproject.toml", "README.md", "contracts", "services", "deploy/postgres"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    runtime = stages()[-1]
    users = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert users, "no USER: the services would run as root"
    assert users[-1] not in ("root", "0", "0:0")
    runs = " ".join(line for line in runtime if line.upper().startswith("RUN "))
    assert "useradd" in runs and users[-1] in runs


def test_the_image_has_a_healthcheck_on_ready() -> None:
    runtime = stages()[-1]
    [check] = [line for line in runtime if line.upper().startswith("HEALTHCHECK ")]
    assert "urllib.request.urlopen" in check and "KALO_READY_URL" in check
    env = " ".join(line for line in runtime if line.upper().startswith("ENV "))
    assert "KALO_READY_URL=http://127.0.0.1:8080/ready" in env


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip()[:1] not in ("", "#")
    }
    assert {
        ".venv",
        ".git",
        "deploy/local/.state",
        "deploy/local/.kafka",
        "**/__pycache__",
        ".env",
        "tests",
    } <= ignored
    # Nothing the build stage copies is ignored.
    for source in [*build_stage_sources(), "requirements.lock"]:
        assert source not in ignored and not any(source.startswith(f"{i}/") for i in ignored), source
