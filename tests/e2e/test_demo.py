"""`make demo`'s last step, `kalo demo`, pushes a sample month through the running services."""

import re
import subprocess
import sys

import asyncpg

from tests.integration.conftest import ROOT, Stack
from tests.support.terminal import run_in_pty


async def test_the_demo_pushes_a_sample_month_through_the_stack_and_says_what_happened(
    services: Stack, db: asyncpg.Connection
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--employers", "40", "--timeout", "90"],
        cwd=ROOT,
        env={**services.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "40 declarations" in out
    assert "\x1b" not in out and "declarations submitted" not in out  # piped: no progress bars
    assert "NEGATIVE_AMOUNT x1" in out and "DUPLICATE_WORKER x1" in out
    assert "replaced, not added" in out
    # What it printed is what the ledger holds: 38 originals and the correction accepted, 2 rejected.
    rows = await db.fetch(
        "SELECT status, count(*) AS n FROM gateway.declarations"
        " WHERE employer_id LIKE 'DEMO-%' GROUP BY status"
    )
    counts = {r["status"]: r["n"] for r in rows}
    assert counts == {"accepted": 39, "rejected": 2}
    assert "│ accepted │ 39" in out
    # Careers imported for the month's retiring workers, their claims filed and liquidated.
    assert "liquidations (RULES.md §3)" in out and "lump_sum" in out and "AGE_NOT_REACHED" in out
    claims = await db.fetch(
        "SELECT status, liquidation FROM gateway.pension_claim_states"
        " WHERE filed_by_label LIKE 'demo back office %'"
    )
    assert len(claims) >= 150 and all(c["liquidation"] is not None for c in claims)
    assert f"{len(claims)} claims filed" in out or "second claims (revisions)" in out


def test_the_demo_draws_its_progress_on_a_terminal(services: Stack) -> None:
    status, screen = run_in_pty(
        [
            sys.executable,
            "-m",
            "services.cli",
            "demo",
            "--employers",
            "10",
            "--retiring",
            "0",
            "--timeout",
            "90",
        ],
        env=services.env,
        cwd=ROOT,
    )
    assert status == 0, screen[-3000:]
    assert "\x1b[" in screen  # drawn, then erased
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    for stage in ("employers registered", "declarations submitted", "declarations decided"):
        assert stage in screen, screen[-3000:]
    assert "10/10" in screen and "10 declarations" in screen
