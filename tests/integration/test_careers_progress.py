"""`kalo careers import --wait` at a terminal: a bar of the workers the ledger applied."""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

from tests.integration.conftest import ROOT, Stack
from tests.support.terminal import run_in_pty

WORKERS = 25


async def test_careers_import_shows_the_workers_applied_on_a_terminal(
    services: Stack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    rows = [f"W-{tag}-{w},1999-{m:02d},OLD/{w},80000" for w in range(WORKERS) for m in range(1, 13)]
    file = tmp_path / "careers.csv"
    file.write_text("worker_id,period,employer_id,base\n" + "\n".join(rows) + "\n")
    status, screen = run_in_pty(
        [sys.executable, "-m", "services.cli", "careers", "import", str(file), "--wait", "60"],
        env=services.env,
        cwd=ROOT,
    )
    assert status == 0, screen[-3000:]
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "workers applied by the ledger" in screen, screen[-3000:]
    assert f"{WORKERS}/{WORKERS}" in screen
    assert f"the ledger applied {WORKERS} of {WORKERS} workers" in screen
