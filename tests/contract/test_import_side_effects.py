"""Importing never builds anything: every module of `services` and `contracts` imports without a
connection attempted, settings read or a thread started (DESIGN.md §3: `app.py` builds the service
from settings at start, nothing is built at import).

The imports run in a fresh interpreter with no `KALO_*` variable, in an empty folder (no `.env`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import asyncio
import importlib
import json
import pkgutil
import socket
import sys
import threading
import traceback

import pydantic_settings

seen = {"connections": [], "settings": [], "threads": [], "errors": [], "modules": []}
current = ["(probe)"]


def record(kind, what):
    seen[kind].append([current[0], what])


def connect(self, address, *args, **kwargs):
    record("connections", f"socket.connect {address!r}")
    raise OSError("no connection at import")


def connect_ex(self, address, *args, **kwargs):
    record("connections", f"socket.connect_ex {address!r}")
    return 111


def create_connection(address, *args, **kwargs):
    record("connections", f"socket.create_connection {address!r}")
    raise OSError("no connection at import")


async def loop_create_connection(self, protocol_factory, host=None, port=None, *args, **kwargs):
    record("connections", f"loop.create_connection {host!r}:{port!r}")
    raise OSError("no connection at import")


settings_init = pydantic_settings.BaseSettings.__init__


def read_settings(self, *args, **kwargs):
    record("settings", type(self).__module__ + "." + type(self).__qualname__)
    settings_init(self, *args, **kwargs)


thread_start = threading.Thread.start


def start_thread(self, *args, **kwargs):
    record("threads", self.name)
    thread_start(self, *args, **kwargs)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.create_connection = create_connection
asyncio.BaseEventLoop.create_connection = loop_create_connection
pydantic_settings.BaseSettings.__init__ = read_settings
threading.Thread.start = start_thread


def fail(name):
    seen["errors"].append([name, traceback.format_exc()])


for root in ("contracts", "services"):
    current[0] = root
    package = importlib.import_module(root)
    names = [root]
    for info in pkgutil.walk_packages(package.__path__, root + ".", onerror=fail):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    for name in names:
        current[0] = name
        try:
            importlib.import_module(name)
        except BaseException:
            fail(name)
        seen["modules"].append(name)

print("PROBE " + json.dumps(seen))
"""


def probe(root: Path, tmp: Path) -> dict[str, list[Any]]:
    """Import every module of the packages under `root` in a fresh interpreter; what each one did."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALO_")}
    env.update(PYTHONPATH=str(root), HOME=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    (tmp / "probe.py").write_text(PROBE)
    result = subprocess.run(
        [sys.executable, str(tmp / "probe.py")],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("PROBE "))
    seen: dict[str, list[Any]] = json.loads(line.removeprefix("PROBE "))
    return seen


def test_importing_any_module_builds_nothing(tmp_path: Path) -> None:
    seen = probe(ROOT, tmp_path)

    modules = seen["modules"]
    # The walk found the packages of this checkout, services and their entry points included.
    for name in ("contracts.envelope", "services.rules", "services.cli.main"):
        assert name in modules
    for service in ("gateway", "assessment", "ledger"):
        assert f"services.{service}.app" in modules
    assert not [m for m in modules if m.endswith("__main__")]
    assert not seen["errors"], "\n".join(f"{name}:\n{tb}" for name, tb in seen["errors"])
    assert not seen["connections"], seen["connections"]
    assert not seen["settings"], seen["settings"]
    assert not seen["threads"], seen["threads"]


def test_the_probe_sees_a_module_that_builds_at_import(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("contracts", "services"):
        shutil.copytree(ROOT / package, tmp_path / "src" / package, ignore=ignore)
    planted = tmp_path / "src" / "services" / "common" / "csv_safe.py"
    planted.write_text(
        planted.read_text()
        + """
import socket as _socket
from services.common.settings import get_settings as _get_settings

try:
    _socket.create_connection(("127.0.0.1", _get_settings().pg_port), timeout=0.1)
except OSError:
    pass
"""
    )
    (tmp_path / "run").mkdir()

    seen = probe(tmp_path / "src", tmp_path / "run")

    # Imported first by the walk or by a module importing it: either way it is named.
    assert "services.common.settings.Settings" in [what for _, what in seen["settings"]]
    assert "socket.create_connection ('127.0.0.1', 5433)" in [what for _, what in seen["connections"]]
