"""`kalo employers`: the employer registry and its API keys."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from services.cli.output import console
from services.common.settings import get_settings

app = typer.Typer(help="The employer registry and API keys.", no_args_is_help=True)


@app.command("add")
def employers_add(
    employer_id: Annotated[str, typer.Argument(help="e.g. the INPS employer number")],
    regime: Annotated[str, typer.Option(help="INPS or CMSS")] = "INPS",
    risk_class: Annotated[int | None, typer.Option(help="ATMP risk class 1-4 (INPS)")] = None,
    filing: Annotated[str, typer.Option(help="monthly or quarterly")] = "monthly",
    name: Annotated[str | None, typer.Option(help="the employer's name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Register an employer and print its API key (shown only once)."""
    from services.common.db import connect
    from services.gateway.registry import add_employer

    if regime not in ("INPS", "CMSS"):
        raise typer.BadParameter("regime must be INPS or CMSS", param_hint="--regime")
    if filing not in ("monthly", "quarterly"):
        raise typer.BadParameter("filing must be monthly or quarterly", param_hint="--filing")
    if regime == "INPS" and risk_class not in (1, 2, 3, 4):
        raise typer.BadParameter("an INPS employer needs a risk class 1-4", param_hint="--risk-class")

    async def go() -> str:
        conn = await connect("gateway", get_settings())  # the registry is the gateway's
        try:
            return await add_employer(
                conn,
                employer_id=employer_id,
                regime=regime,
                risk_class=risk_class,
                filing=filing,
                name=name,
            )
        finally:
            await conn.close()

    key = asyncio.run(go())
    if as_json:
        print(json.dumps({"employer_id": employer_id, "api_key": key}))
    else:
        console.print(f"employer {employer_id} registered; API key (shown once):\n{key}")
