"""The real stack for integration tests: Kafka and PostgreSQL started by `make up`.

Each test session gets its own database and its own topic prefix, so runs never see
each other's data, and starts the services as real processes against them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from services.common.settings import Settings
from tests.support.promtool import promtool  # noqa: F401 - a fixture, for the tests that run promtool
from tests.support.sandbox import sandbox

ROOT = Path(__file__).resolve().parents[2]
SUPERVISE = ROOT / "deploy" / "local" / "supervise.sh"


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    admin_dsn: str
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def start(
        self, service: str, name: str | None = None, *, supervised: bool = False, **extra_env: str
    ) -> subprocess.Popen[bytes]:
        """Start a service process. `supervised`: under deploy/local/supervise.sh, as
        services.sh runs it (started again when it dies); the Popen is the supervisor's."""
        name = name or service
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        command = [sys.executable, "-m", "services.cli", "run", service]
        if supervised:
            pid_file = str(self.child_pid_file(name))
            command = ["bash", str(SUPERVISE), "--child-pid", pid_file, name, "--", *command]
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def stop(self, name: str, sig: int = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def child_pid_file(self, name: str) -> Path:
        return self.logs / f"{name}.child.pid"

    def child_pid(self, name: str) -> int | None:
        """The pid of a supervised service's current process (None while it is restarted)."""
        try:
            pid = int(self.child_pid_file(name).read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def restarts(self, name: str) -> int:
        """How many times the supervisor started a service again (from its log)."""
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return sum(1 for line in text.splitlines() if "[supervise]" in line and "restarting in" in line)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


async def _reachable(settings: Settings) -> None:
    from services.common.kafka_ping import ping

    try:
        await asyncio.wait_for(ping(settings.bootstrap), timeout=10)
        conn = await asyncpg.connect(settings.dsn, timeout=10)
        await conn.close()
    except Exception as exc:  # the stack is a precondition: fail loudly, never skip
        pytest.fail(f"the local stack is not running ({exc!r}); start it with `make up`")


@asynccontextmanager
async def isolated_stack(tmp: Path) -> AsyncIterator[Stack]:
    """A fresh database and topic prefix on the running Kafka and PostgreSQL."""
    await _reachable(Settings())
    (tmp / "logs").mkdir(parents=True, exist_ok=True)
    async with sandbox(
        tmp / "data",
        KALO_GATEWAY_RATE_PER_SECOND="1000",
        KALO_GATEWAY_RATE_BURST="2000",
        KALO_KAFKA_SESSION_TIMEOUT_S="6",
    ) as sb:
        stack = Stack(sb.settings, sb.env, Settings().dsn, tmp / "logs")
        try:
            yield stack
        finally:
            for name in list(stack.procs):
                stack.stop(name)


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(tmp_path: Path) -> AsyncIterator[tuple[Stack, asyncpg.Connection]]:
    """A stack of the test's own (fresh database and topics), for tests that kill services."""
    async with isolated_stack(tmp_path) as stack:
        conn = await asyncpg.connect(stack.settings.dsn)
        try:
            yield stack, conn
        finally:
            await conn.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with isolated_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while starting")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {seconds}s")


@pytest.fixture(scope="session")
def services(stack: Stack) -> Iterator[Stack]:
    """The gateway, the assessment worker, the ledger and the liquidation, as real processes."""
    gateway = stack.start("gateway")
    stack.start("assessment")
    stack.start("ledger")
    stack.start("liquidation")
    try:
        wait_http(f"{stack.gateway_url}/health", gateway)
    except Exception:
        print(stack.log_tail("gateway"))
        raise
    yield stack


@pytest_asyncio.fixture(loop_scope="session")
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.settings.dsn)
    try:
        yield conn
    finally:
        await conn.close()
