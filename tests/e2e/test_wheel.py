"""What ships is what runs: the wheel, installed in a fresh virtualenv with the lock file's versions,
answers `kalo --version`, lists the rules' parameters, applies every migration of deploy/postgres from
its own packaged copy to a fresh database, and offers `kalo demo`. Nothing of the checkout is on its
path: the commands run from an empty folder, without PYTHONPATH."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from services.common.settings import Settings
from tests.contract.test_dockerfile import build_stage_sources

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")  # installed in the virtualenv by `make install`
BUILD = [str(UV), "build", "--wheel", "--quiet", "-o"]
MIGRATIONS = sorted(p.name for p in (ROOT / "deploy" / "postgres").glob("*.sql"))
BUDGET_S = 240  # building and installing take seconds with uv's cache; a few minutes at most without it


@dataclass
class Installed:
    wheel: Path
    venv: Path
    run_dir: Path  # an empty folder: no checkout, no .env
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=self.run_dir,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(f"{' '.join(args)[:60]}: {time.monotonic() - started:.1f} s, exit {result.returncode}")
        return result


def step(what: str, command: list[str], timeout: float, cwd: Path = ROOT) -> None:
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    print(f"{what}: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, f"{what} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: `make install` puts uv in the virtualenv")
    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("wheel")
    dist, venv, run_dir = tmp / "dist", tmp / "venv", tmp / "run"
    run_dir.mkdir()
    # Built as the Dockerfile's build stage does, from the files it copies and nothing else.
    context = tmp / "context"
    for source in build_stage_sources():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, context / source)
    step("build the wheel", [*BUILD, str(dist)], timeout=180, cwd=context)
    (wheel,) = dist.glob("kalo-*.whl")
    step("create a virtualenv", [str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], 60)
    python = str(venv / "bin" / "python")
    install = [str(UV), "pip", "install", "--quiet", "--python", python]
    step("install requirements.lock", [*install, "-r", str(ROOT / "requirements.lock")], timeout=180)
    step("install the wheel", [*install, "--no-deps", str(wheel)], timeout=60)
    print(f"wheel installed in {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < BUDGET_S
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KALO_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    yield Installed(wheel, venv, run_dir, env)


def test_the_wheel_ships_the_packages_and_the_sql_and_no_test_code(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {f"services/migrations/{name}" for name in MIGRATIONS} <= set(names)
    assert "services/rules/parameters/smig.yaml" in names
    assert "contracts/schemas/declaration.submitted.v1.json" in names
    assert not [n for n in names if n.startswith(("tests/", "loadtests/", "deploy/"))]
    assert not [n for n in names if n.endswith(("sandbox.py", "submitted.py"))]


def test_the_checkout_builds_the_same_wheel(installed: Installed, tmp_path: Path) -> None:
    step("build the wheel of the checkout", [*BUILD, str(tmp_path)], timeout=180)
    (wheel,) = tmp_path.glob("kalo-*.whl")
    assert sorted(zipfile.ZipFile(wheel).namelist()) == sorted(zipfile.ZipFile(installed.wheel).namelist())


def test_the_installed_code_is_the_wheels(installed: Installed) -> None:
    result = installed.run(
        "python",
        "-c",
        "import services, contracts; from services.common.db import migration_files; "
        "print(services.__file__); print(contracts.__file__); print(*migration_files(), sep='\\n')",
    )
    assert result.returncode == 0, result.stderr
    site = str(installed.venv)
    paths = result.stdout.split()
    assert all(p.startswith(site) for p in paths), paths
    packaged = [Path(p) for p in paths[2:]]
    assert [p.name for p in packaged] == MIGRATIONS
    for path in packaged:
        assert path.parent.name == "migrations" and path.parent.parent.name == "services"
        assert path.read_bytes() == (ROOT / "deploy" / "postgres" / path.name).read_bytes()


def test_kalo_version(installed: Installed) -> None:
    result = installed.run("kalo", "--version")
    assert result.returncode == 0, result.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.stdout.strip() == f"kalo {version}"


def test_kalo_rules_params_reads_the_shipped_parameters(installed: Installed) -> None:
    result = installed.run("kalo", "rules", "params", "--json")
    assert result.returncode == 0, result.stderr
    assert '"ruleset": "rs-' in result.stdout and '"inps.ceiling"' in result.stdout


def test_kalo_demo_is_offered(installed: Installed) -> None:
    result = installed.run("kalo", "demo", "--help")
    assert result.returncode == 0, result.stderr
    assert "sample month" in result.stdout


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _applied(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")]
    finally:
        await conn.close()


def test_kalo_db_migrate_applies_every_packaged_migration(installed: Installed) -> None:
    admin = Settings().dsn  # the running stack's PostgreSQL (`make up`)
    db = f"kalo_wheel_{uuid.uuid4().hex[:8]}"
    dsn = admin.rsplit("/", 1)[0] + f"/{db}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{db}"'))
    try:
        first = installed.run("kalo", "db", "migrate", KALO_DATABASE_URL=dsn)
        assert first.returncode == 0, first.stdout + first.stderr
        assert all(name in first.stdout for name in MIGRATIONS), first.stdout
        assert asyncio.run(_applied(dsn)) == MIGRATIONS

        again = installed.run("kalo", "db", "migrate", KALO_DATABASE_URL=dsn)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "schema up to date" in again.stdout
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
