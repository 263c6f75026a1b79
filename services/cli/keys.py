"""`kalo keys`: API keys for back offices, controllers and auditors."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from services.common.settings import get_settings

app = typer.Typer(help="API keys for back offices, controllers and auditors.", no_args_is_help=True)


@app.command("add")
def keys_add(
    role: Annotated[str, typer.Argument(help="backoffice | controller | auditor")],
    label: Annotated[str, typer.Option(help="who holds the key")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue an API key for a staff role (shown only once)."""
    from services.common.db import connect
    from services.gateway.registry import add_staff_key

    async def go() -> str:
        conn = await connect("gateway", get_settings())  # the registry is the gateway's
        try:
            return await add_staff_key(conn, role=role, label=label)
        finally:
            await conn.close()

    try:
        key = asyncio.run(go())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    print(json.dumps({"role": role, "label": label, "api_key": key}) if as_json else key)
