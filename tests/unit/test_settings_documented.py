"""Every `KALO_*` setting is in the README's settings table, with its default."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# Where settings are read: the services, the image and compose, the local stack's scripts.
READERS = ("services", "contracts", "deploy", "loadtests", "Dockerfile", "docker-compose.yml", "Makefile")
NOT_SETTINGS = {"KALO_NAMESPACE"}  # contracts/envelope.py: the uuid5 namespace, a constant


def table() -> dict[str, str]:
    """`KALO_X` → its default cell, from the table of the README's section `### Settings`."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### Settings\n", 1)[1].split("\n#", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and (name := re.fullmatch(r"`(KALO_[A-Z0-9_]+)`", cells[0])):
            assert name[1] not in rows, f"{name[1]} twice in the table"
            rows[name[1]] = cells[1]
    return rows


def sources(folder: Path) -> Iterator[Path]:
    """The source files under a folder, not under hidden folders: deploy/local/.state holds the
    running stack's Kafka and PostgreSQL data, whose files come and go while tests run."""
    for where, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if not f.startswith(".") and f != "__pycache__"]
        for name in files:
            if name.endswith((".py", ".sh", ".yml", ".yaml")):
                yield Path(where, name)


def read_in_code() -> set[str]:
    names: set[str] = set()
    for reader in READERS:
        path = ROOT / reader
        files = [path] if path.is_file() else list(sources(path))
        for file in files:
            names |= set(re.findall(r"\bKALO_[A-Z0-9_]*[A-Z0-9]\b", file.read_text(errors="replace")))
    return names - NOT_SETTINGS


def test_every_settings_field_is_in_the_readme_table_with_its_default() -> None:
    rows = table()
    for name, field in Settings.model_fields.items():
        variable = f"KALO_{name.upper()}"
        assert variable in rows, f"{variable} is not in the README's settings table"
        default, cell = field.default, rows[variable]
        if "KALO_" in cell.replace(variable, ""):
            continue  # derived from another setting, which the table shows
        if default is None:
            assert "none" in cell.lower(), f"{variable}: default none, the table says {cell}"
        elif isinstance(default, bool):
            assert f"`{str(default).lower()}`" in cell, (
                f"{variable}: default {default}, the table says {cell}"
            )
        elif isinstance(default, int | float):
            assert f"`{default:g}`" in cell or f"`{default}`" in cell, f"{variable}: {default} vs {cell}"
        elif default:
            assert f"`{default}`" in cell, f"{variable}: default {default!r}, the table says {cell}"


def test_every_kalo_variable_the_code_reads_is_in_the_table() -> None:
    rows = table()
    missing = sorted(read_in_code() - set(rows) - {"KALO_SERVICE_DB_PASSWORD"})
    assert not missing, f"not in the README's settings table: {missing}"


def test_the_table_names_no_setting_that_nothing_reads() -> None:
    fields = {f"KALO_{name.upper()}" for name in Settings.model_fields}
    stale = sorted(set(table()) - fields - read_in_code())
    assert not stale, f"in the README's table but read nowhere: {stale}"
