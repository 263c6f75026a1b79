"""The import-linter contracts of pyproject.toml hold on the repository; a forbidden import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` puts its cwd first on sys.path: it reads the packages found there."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_packages(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("contracts", "services"):
        shutil.copytree(ROOT / package, into / package, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", into / "pyproject.toml")


def test_a_rule_importing_a_service_breaks_the_rules_contract(tmp_path: Path) -> None:
    copy_packages(tmp_path)
    money = tmp_path / "services" / "rules" / "money.py"
    money.write_text(money.read_text() + "\nimport services.gateway  # noqa: E402,F401\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert "services.rules imports no other part of services and nothing of contracts" in broken
    assert "services.rules is not allowed to import services.gateway" in broken
    assert "services.rules.money -> services.gateway" in broken


def test_a_service_importing_another_breaks_their_independence(tmp_path: Path) -> None:
    copy_packages(tmp_path)
    handlers = tmp_path / "services" / "ledger" / "handlers.py"
    handlers.write_text(handlers.read_text() + "\nimport services.assessment.handlers  # noqa: E402,F401\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert "services meet only through contracts and topics" in broken
    assert "services.ledger is not allowed to import services.assessment" in broken
    assert "services.ledger.handlers -> services.assessment.handlers" in broken
