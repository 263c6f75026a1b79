"""`kalo status --watch` in a real terminal (tmux), on a running stack of the test's own: its
screen shows the stack's figures, and a service that is not running as down."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import httpx

from services.common import kafka
from tests.integration.conftest import ROOT, Stack, wait_http
from tests.integration.helpers import auth, declaration, inps_line, register_employer, wait_status
from tests.support.sandbox import free_port

DECLARATIONS = 3


def row(screen: str, label: str) -> list[str]:
    """The cells of the table row that starts with `label` (empty when there is none)."""
    for line in screen.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == label:
            return cells
    return []


class Tmux:
    """A tmux server of the test's own (its own socket): nothing else's sessions are touched."""

    def __init__(self) -> None:
        tmux = os.environ.get("KALO_TMUX") or shutil.which("tmux")
        assert tmux, "tmux is missing: `make up` installs it (deploy/local/tmux.sh)"
        self.base = [tmux, "-L", f"kalo-test-{uuid.uuid4().hex[:8]}"]

    def start(self, command: list[str], env: dict[str, str]) -> None:
        subprocess.run(
            [
                *self.base,
                "new-session",
                "-d",
                "-s",
                "watch",
                "-x",
                "110",
                "-y",
                "60",
                "-c",
                str(ROOT),
                *command,
            ],
            env=env,
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "watch"], capture_output=True, text=True, check=True
        ).stdout

    def stop(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False)


async def test_the_watch_shows_the_figures_of_a_running_stack(fresh) -> None:
    stack, db = fresh
    stack: Stack
    gateway = stack.start("gateway")
    stack.start("assessment")
    stack.start("ledger")
    wait_http(f"{stack.gateway_url}/health", gateway)
    employer_id, key = await register_employer(db, risk_class=2)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        for month in range(1, DECLARATIONS + 1):
            body = declaration(
                employer_id, [inps_line("W1", 250_000), inps_line("W2", 90_000)], period=f"2026-0{month}"
            )
            r = await client.post("/v1/declarations", json=body, headers=auth(key))
            assert r.status_code == 202, r.text
            await wait_status(client, r.json()["declaration_id"], key)
    producer = kafka.producer(stack.settings)
    await producer.start()
    try:  # not a declaration: the assessment parks it on kalo.dlq
        await producer.send_and_wait(kafka.topic("kalo.declarations.submitted", stack.settings), b"{not json")
    finally:
        await producer.stop()

    tmux = Tmux()
    # The services that are not running answer on no port of theirs (audit's too).
    env = {**stack.env, "KALO_AUDIT_METRICS_PORT": str(free_port()), "COLUMNS": "110"}
    tmux.start([sys.executable, "-m", "services.cli", "status", "--watch", "--interval", "1"], env)
    try:
        wanted = {
            "declarations received": str(DECLARATIONS),
            "declarations decided": str(DECLARATIONS),
            "DLQ messages (topic)": "1",
            "outbox backlog": "0",
            "control pending": "0",
        }
        screen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = tmux.screen()
            parked = row(screen, "assessment")[-1:] == ["1"]  # its DLQ counter, from its /metrics
            if parked and all(row(screen, label)[1:2] == [value] for label, value in wanted.items()):
                break
            await asyncio.sleep(0.5)
        for label, value in wanted.items():
            assert row(screen, label)[1:2] == [value], f"{label}: {row(screen, label)}\n{screen}"
        assert row(screen, "assessment")[-1] == "1", screen  # what it parked, read from its /metrics
        assert row(screen, "gateway")[1] == "up", screen
        assert row(screen, "assessment")[1] == "up", screen
        assert row(screen, "ledger")[1] == "up", screen
        for down in ("liquidation", "control", "audit"):
            assert row(screen, down)[1] == "down", screen
        # Lag of the running consumers: a number read from their metrics or their Kafka group.
        assert re.fullmatch(r"\d[\d,]*", row(screen, "assessment")[2]), screen
        assert re.fullmatch(r"\d[\d,]*", row(screen, "ledger")[2]), screen
        assert row(screen, "declarations/s")[1] != "—", screen
        assert "Objectives (p99)" in screen and row(screen, "receipt")[2] == "250.0 ms", screen
    finally:
        tmux.stop()
