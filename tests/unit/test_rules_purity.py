"""services/rules stays pure: the standard library, yaml and itself; no Kafka, database,
clock or network (DESIGN.md §2). Checked on the source, and on what importing it loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import services.rules

PACKAGE = Path(services.rules.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
# Standard modules that would let the rules reach the outside world or the time of day.
IMPURE_STDLIB = frozenset(
    {
        "asyncio",
        "ftplib",
        "http",
        "multiprocessing",
        "os",
        "random",
        "secrets",
        "select",
        "selectors",
        "shutil",
        "smtplib",
        "socket",
        "socketserver",
        "sqlite3",
        "ssl",
        "subprocess",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "uuid",
    }
)
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "time", "monotonic", "perf_counter"})


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            found.append((node.lineno, node.module or ""))
    return found


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    if module == "services.rules" or module.startswith("services.rules."):
        return True
    if top == "yaml":
        return True
    return top in sys.stdlib_module_names and top not in IMPURE_STDLIB


def test_the_rules_import_only_the_standard_library_yaml_and_themselves() -> None:
    assert SOURCES, "no source found"
    bad = [
        f"{path.relative_to(PACKAGE)}:{line}: {module}"
        for path in SOURCES
        for line, module in _imports(path)
        if not _allowed(module)
    ]
    assert bad == []


def test_the_rules_never_read_the_clock() -> None:
    calls = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}: .{node.func.attr}()"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    ]
    assert calls == []


def test_the_check_would_catch_an_impure_import() -> None:
    for module in ("aiokafka", "asyncpg", "faust", "services.common.settings", "contracts", "socket", "time"):
        assert not _allowed(module), module
    for module in ("decimal", "datetime", "yaml", "services.rules.money"):
        assert _allowed(module), module


def _loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_importing_the_rules_loads_nothing_beyond_yaml_and_the_standard_library() -> None:
    # Measured against a bare interpreter that imported yaml, so interpreter and yaml
    # internals (site hooks, yaml's C extension) do not count.
    extra = _loaded_by("import yaml, services.rules") - _loaded_by("import yaml")
    foreign = {m for m in extra if m.split(".")[0] not in sys.stdlib_module_names}
    assert foreign == {m for m in extra if m == "services" or m.startswith("services.rules")}
