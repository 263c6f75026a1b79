"""`kalo dlq`: the dead-letter topic (kalo.dlq)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from services.cli.output import console
from services.cli.progress import progress
from services.common.settings import get_settings

app = typer.Typer(help="The dead-letter topic (kalo.dlq).", no_args_is_help=True)


@app.command("list")
def dlq_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every message parked in the dead-letter topic, with its error and origin."""
    from services.common.dlq_ops import read_dead_letters, summary

    rows = [summary(letter) for letter in asyncio.run(read_dead_letters(get_settings()))]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "at", "service", "source", "bytes", "error")
    for r in rows:
        table.add_row(r["id"], r["at"][:19], r["service"], r["source"], str(r["bytes"]), r["error"][:80])
    console.print(table)
    console.print(f"{len(rows)} dead letter(s)")


@app.command("replay")
def dlq_replay(
    letter_ids: Annotated[
        list[str],
        typer.Argument(
            help="the ids shown by `kalo dlq list` (several: `kalo dlq list --json | jq -r '.[].id'`)"
        ),
    ],
) -> None:
    """Send dead letters' original bytes back to their topics (every id checked before any is sent)."""
    import getpass

    from services.common.dlq_ops import replay_many

    try:  # the audit event names who replayed it: the operating-system user of the command
        with progress(console) as report:
            results = asyncio.run(
                replay_many(
                    get_settings(),
                    letter_ids,
                    actor=f"cli:{getpass.getuser()}",
                    on_progress=lambda sent, total: report("dead letters replayed", sent, total),
                )
            )
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    for result in results:
        where = f"{result['topic']} partition {result['partition']} offset {result['offset']}"
        console.print(f"replayed {result['id']} to {where}", soft_wrap=True)  # one line each, piped too
