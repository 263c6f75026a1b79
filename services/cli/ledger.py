"""`kalo ledger`: the ledger's projections."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from services.cli.output import console
from services.cli.progress import progress
from services.common.settings import get_settings

app = typer.Typer(help="The ledger's projections (accounts, careers).", no_args_is_help=True)


@app.command("rebuild")
def ledger_rebuild(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            help="rebuild into this new schema instead, leaving the live projections alone, and diff "
            "the two (exit 1 when they differ)",
        ),
    ] = None,
) -> None:
    """Empty the ledger's projections and replay its topics from the beginning (ledger stopped);
    with --into SCHEMA, rebuild beside them and diff."""
    from services.ledger.app import rebuild, rebuild_into
    from services.ledger.rebuild import LedgerRunning

    if into is not None:
        try:
            with progress(console, enabled=not as_json) as report:
                result = asyncio.run(rebuild_into(into, get_settings(), report))
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        if as_json:
            print(json.dumps(result, default=str))
        else:
            console.print(
                f"rebuilt {result['records']:,} records into schema {into}; against {result['live']}:"
            )
            for table, d in result["tables"].items():
                mark = "[green]=[/green]" if not (d["only_live"] or d["only_rebuilt"]) else "[red]≠[/red]"
                console.print(
                    f"  {mark} {table}: live {d['live']:,}, rebuilt {d['rebuilt']:,}, "
                    f"only live {d['only_live']:,}, only rebuilt {d['only_rebuilt']:,}"
                )
                for row in d["examples_live"]:
                    console.print(f"      live only:    {row}")
                for row in d["examples_rebuilt"]:
                    console.print(f"      rebuilt only: {row}")
            _print_refused(result["refused"], result["refused_count"])
        if not result["equal"]:
            raise typer.Exit(1)
        return

    try:
        with progress(console, enabled=not as_json) as report:
            counts = asyncio.run(rebuild(get_settings(), report))
    except LedgerRunning as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(counts))
        return
    refused = counts.pop("refused")
    refused_count = counts.pop("refused_count")
    console.print(", ".join(f"{k} {v:,}" for k, v in counts.items()))
    _print_refused(refused, refused_count)


def _print_refused(refused: list[dict[str, object]], count: int) -> None:
    """The records a rebuild could not apply: parked by the live ledger, not again."""
    if count:
        console.print(f"{count:,} record(s) not applied (the live ledger parked them: kalo dlq list):")
        for r in refused[:10]:
            console.print(f"  {r['topic']}/{r['partition']}/{r['offset']}: {r['error']}")
