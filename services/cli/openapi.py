"""`kalo openapi`."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.output import console


def openapi(
    check: Annotated[bool, typer.Option("--check", help="exit 1 if an exported document is stale")] = False,
) -> None:
    """Export the OpenAPI documents of the gateway (contracts/openapi.json) and of the control
    commission (contracts/control-openapi.json)."""
    from services.common.openapi import render
    from services.control import openapi as control
    from services.gateway import openapi as gateway

    stale = False
    for export, document in ((gateway.EXPORT, gateway.document), (control.EXPORT, control.document)):
        text = render(document())
        if check:
            if not export.exists() or export.read_text() != text:
                console.print(f"[red]{export} is stale: run `kalo openapi`[/red]")
                stale = True
            else:
                console.print(f"{export} is up to date")
            continue
        export.write_text(text)
        console.print(f"wrote {export}")
    if stale:
        raise typer.Exit(1)
