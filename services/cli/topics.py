"""`kalo topics`: the Kafka topics of the registry."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from services.cli.output import console

app = typer.Typer(help="Kafka topics of the registry.", no_args_is_help=True)


@app.command("apply")
def topics_apply() -> None:
    """Create or update every topic of the registry."""
    from services.common.kafka import apply_topics

    for change in asyncio.run(apply_topics()):
        console.print(f"{change.topic}: {change.action}")


@app.command("list")
def topics_list() -> None:
    """The topic registry."""
    from contracts.topics import TOPICS

    table = Table("topic", "key", "messages", "retention")
    for t in TOPICS:
        table.add_row(
            t.name,
            t.key,
            ", ".join(m.TYPE for m in t.values),
            "forever" if t.retention_ms < 0 else f"{t.retention_ms // 86_400_000} days",
        )
    console.print(table)
