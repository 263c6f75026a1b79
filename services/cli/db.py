"""`kalo db`: the PostgreSQL schema."""

from __future__ import annotations

import asyncio

import typer

from services.cli.output import console

app = typer.Typer(help="PostgreSQL schema.", no_args_is_help=True)


@app.command("migrate")
def db_migrate() -> None:
    """Apply the SQL migrations (shipped in the package) not yet applied."""
    from services.common.db import NoMigrations, migrate

    try:
        applied = asyncio.run(migrate())
    except NoMigrations as exc:  # an installation without its SQL would apply nothing, silently
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
