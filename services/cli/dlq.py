"""`kalo dlq`: the dead-letter topic (kalo.dlq)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from services.cli.output import console
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
def dlq_replay(letter_id: Annotated[str, typer.Argument(help="the id shown by `kalo dlq list`")]) -> None:
    """Send a dead letter's original bytes back to its topic."""
    import getpass

    from services.common.dlq_ops import replay

    try:  # the audit event names who replayed it: the operating-system user of the command
        result = asyncio.run(replay(get_settings(), letter_id, actor=f"cli:{getpass.getuser()}"))
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    console.print(f"replayed to {result['topic']} partition {result['partition']} offset {result['offset']}")
