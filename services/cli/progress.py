"""Progress bars of the commands that run for more than a few seconds: drawn on a terminal
only, so that piped output (and --json) stays exactly what the command prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from services.cli.output import console as default_console

# stage, done, total (None: not known, a spinner instead of a bar)
Report = Callable[[str, int, int | None], None]


def _silent(stage: str, done: int, total: int | None) -> None:
    return None


@contextmanager
def progress(console: Console | None = None, *, enabled: bool = True) -> Iterator[Report]:
    """A `report(stage, done, total)` that draws one bar per stage while the block runs (and
    erases them after it), or does nothing when the console is not a terminal."""
    console = console or default_console
    if not (enabled and console.is_terminal):
        yield _silent
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield report
