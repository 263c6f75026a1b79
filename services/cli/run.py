"""`kalo run NAME`: every service starts the same way, through one registry of services.

Each entry names the function that builds the service from its settings and runs it in the
foreground; nothing of a service is imported before it is asked for.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from services.cli.output import console
from services.common.logs import configure_logging
from services.common.settings import get_settings

# name → "module:function" that runs it (the module builds everything when called).
SERVICES: dict[str, str] = {
    "gateway": "services.gateway.app:run",
    "assessment": "services.assessment.app:run",
    "ledger": "services.ledger.app:main",
    "liquidation": "services.liquidation.app:run",
    "control": "services.control.app:run",
    "audit": "services.control.audit.app:main",
}
PLANNED: tuple[str, ...] = ()


def run(service: Annotated[str, typer.Argument(help=" | ".join((*SERVICES, *PLANNED)))]) -> None:
    """Run one service in the foreground."""
    target = SERVICES.get(service)
    if target is None:
        if service in PLANNED:
            console.print(f"[red]{service} is not built yet[/red]")
        else:
            console.print(f"[red]unknown service {service!r}; one of {', '.join(SERVICES)}[/red]")
        raise typer.Exit(2)
    # Every line of a service through one setup (JSON off a terminal), before it builds anything.
    configure_logging(service, get_settings())
    module, function = target.split(":")
    getattr(importlib.import_module(module), function)()
