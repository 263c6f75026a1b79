"""`kalo status`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from services.cli.output import console
from services.common.settings import get_settings


def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Topics, consumer lag, declarations by status, outbox backlog."""
    from services.common.status import database_status, kafka_status

    s = get_settings()
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
