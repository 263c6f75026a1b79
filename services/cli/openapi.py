"""`kalo openapi`."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.output import console


def openapi(
    check: Annotated[bool, typer.Option("--check", help="exit 1 if contracts/openapi.json is stale")] = False,
) -> None:
    """Export the gateway's OpenAPI document to contracts/openapi.json."""
    from services.gateway.openapi import EXPORT, document, render

    text = render(document())
    if check:
        if not EXPORT.exists() or EXPORT.read_text() != text:
            console.print(f"[red]{EXPORT} is stale: run `kalo openapi`[/red]")
            raise typer.Exit(1)
        console.print(f"{EXPORT} is up to date")
        return
    EXPORT.write_text(text)
    console.print(f"wrote {EXPORT}")
