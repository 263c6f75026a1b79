"""The `kalo` command: one module per command group, assembled here."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from services.cli import audit, careers, db, dlq, employers, keys, ledger, rules, topics
from services.cli.demo import demo
from services.cli.openapi import openapi
from services.cli.replay import replay
from services.cli.run import run
from services.cli.status import status

app = typer.Typer(
    help="Kalo: social-security declarations and pensions as event streams.", no_args_is_help=True
)


def kalo_version() -> str:
    try:
        return version("kalo")
    except PackageNotFoundError:  # a checkout that was never installed
        return "unknown"


def _version(value: bool) -> None:
    if value:
        print(f"kalo {kalo_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Kalo: social-security declarations and pensions as event streams."""


app.command()(run)
app.command()(demo)
app.command()(openapi)
app.command()(status)
app.command()(replay)
app.add_typer(topics.app, name="topics")
app.add_typer(db.app, name="db")
app.add_typer(employers.app, name="employers")
app.add_typer(careers.app, name="careers")
app.add_typer(keys.app, name="keys")
app.add_typer(dlq.app, name="dlq")
app.add_typer(ledger.app, name="ledger")
app.add_typer(rules.app, name="rules")
app.add_typer(audit.app, name="audit")


# Exit status of a command stopped by PostgreSQL or Kafka being away (EX_TEMPFAIL: the same
# command succeeds once they answer).
EXIT_UNAVAILABLE = 75


def main() -> None:
    """`kalo`: a command that meets PostgreSQL or Kafka away says so in one line, not with a
    traceback, and ends with EXIT_UNAVAILABLE; any other error is raised as it is."""
    try:
        app()
    except Exception as exc:
        from services.common.outage import is_outage, what_is_away

        if not is_outage(exc):
            raise
        print(
            f"kalo: {what_is_away(exc)} is unavailable ({type(exc).__name__}: {exc}). "
            "Run the command again once it answers (`kalo status` shows what is down).",
            file=sys.stderr,
        )
        sys.exit(EXIT_UNAVAILABLE)
