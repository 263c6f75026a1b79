"""A `kalo` command that meets PostgreSQL or Kafka away says which, in one line, and ends with
status 75 (try again later), not with a traceback; other errors keep their own status."""

from __future__ import annotations

import os

import pytest

from services.cli.main import EXIT_UNAVAILABLE
from tests.integration.helpers import kalo
from tests.support.sandbox import free_port


@pytest.mark.parametrize(
    ("args", "away"),
    [
        (("dlq", "list"), "Kafka"),
        (("topics", "apply"), "Kafka"),
        (("keys", "add", "auditor", "--label", "outage"), "PostgreSQL"),
        (("employers", "add", "OUTAGE/1", "--regime", "INPS", "--risk-class", "1"), "PostgreSQL"),
    ],
)
def test_a_command_says_what_is_away_and_ends_with_75(args: tuple[str, ...], away: str) -> None:
    closed = free_port()  # nothing listens there
    env = {
        **os.environ,
        "KALO_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}",
        "KALO_DATABASE_URL": f"postgresql://kalo@127.0.0.1:{closed}/kalo",
    }
    done = kalo(env, *args, timeout=120)
    assert done.returncode == EXIT_UNAVAILABLE, done.stdout + done.stderr
    assert f"kalo: {away} is unavailable" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and "╭" not in done.stderr


def test_a_careers_file_with_a_bad_cell_is_still_refused_as_such(tmp_path) -> None:
    """Bad input is not an outage: its own message and status, whatever is up."""
    bad = tmp_path / "careers.csv"
    bad.write_text("worker_id,period,employer_id,base\nW-1,2001-13,E-1,100\n")
    closed = free_port()
    env = {**os.environ, "KALO_DATABASE_URL": f"postgresql://kalo@127.0.0.1:{closed}/kalo"}
    done = kalo(env, "careers", "import", str(bad), timeout=120)
    assert done.returncode == 2 and "2001-13" in done.stdout + done.stderr, done.stdout + done.stderr
