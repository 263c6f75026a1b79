"""The long commands' progress bars: drawn on a terminal, nothing at all when piped."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from services.cli.progress import progress

pytestmark = pytest.mark.unit


def test_a_terminal_sees_each_stage_with_its_count() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress(console) as report:
        report("records replayed", 3, 10)
        report("records replayed", 10, 10)
        report("waiting for the ledger", 0, None)
    screen = out.getvalue()
    assert "records replayed" in screen and "10/10" in screen
    assert "waiting for the ledger" in screen
    assert "\x1b[" in screen  # drawn, then erased (transient)


def test_piped_output_gets_nothing() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    with progress(console) as report:
        report("records replayed", 3, 10)
        console.print("rebuilt 10 records")
    assert out.getvalue() == "rebuilt 10 records\n"


def test_json_output_on_a_terminal_gets_no_bar_either() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress(console, enabled=False) as report:
        report("records replayed", 3, 10)
    assert out.getvalue() == ""
