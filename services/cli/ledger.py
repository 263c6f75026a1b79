"""`kalo ledger`: the ledger's projections."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from services.cli.output import console
from services.common.settings import get_settings

app = typer.Typer(help="The ledger's projections (accounts, careers).", no_args_is_help=True)


@app.command("rebuild")
def ledger_rebuild(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Empty the ledger's projections and replay its topics from the beginning (ledger stopped)."""
    from services.ledger.app import rebuild
    from services.ledger.rebuild import LedgerRunning

    try:
        counts = asyncio.run(rebuild(get_settings()))
    except LedgerRunning as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(counts))
        return
    console.print(", ".join(f"{k} {v:,}" for k, v in counts.items()))
