"""`kalo status` (once, as JSON) and `kalo status --watch` (a live view, services/cli/watch)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from services.cli.output import console
from services.common.settings import get_settings


def status(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="A live view: throughput, lag per service, outbox, DLQ, control, objectives.",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between refreshes of --watch.")
    ] = 3.0,
) -> None:
    """Topics, consumer lag, declarations and pension claims by status, liquidations pending
    control (and escalated), outbox backlog."""
    from services.common.status import database_status, kafka_status

    s = get_settings()
    if watch:
        from services.cli.watch import watch as live

        live(s, interval, console)
        return
    report: dict[str, object] = {}
    for part, probe in (("kafka", kafka_status), ("postgres", database_status)):
        try:
            report[part] = asyncio.run(probe(s))
        except Exception as exc:  # report what is down instead of a traceback
            report[part] = {"error": repr(exc)}
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    console.print_json(json.dumps(report, default=str))
