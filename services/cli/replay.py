"""`kalo replay`: the auditors' replay of a time range (logic in services/replay/engine.py).

    kalo replay --from 2026-11-01 --to 2026-12-01 [--topic kalo.declarations.assessed]...
                [--employer ID] [--verify] [--against-ledger] [--no-careers] [--json]

TIME is ISO 8601 (`2026-11-30T09:00:00Z`); a date alone is its midnight UTC; a time without
an offset is UTC. Exit 0 when every decision re-derives to what was recorded, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from services.cli.output import console
from services.cli.progress import progress
from services.common.settings import get_settings


def parse_time(text: str) -> datetime:
    """ISO 8601; a date alone is its midnight UTC, a time without offset is UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-30T09:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def replay(
    start: Annotated[str, typer.Option("--from", help="start of the range (ISO 8601, included)")],
    end: Annotated[str, typer.Option("--to", help="end of the range (ISO 8601, excluded)")],
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="decision topics to replay (default: all of them)")
    ] = None,
    employer: Annotated[str | None, typer.Option("--employer", help="only this employer's decisions")] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="check each audit record's hashes and its place in the signed log"),
    ] = False,
    against_ledger: Annotated[
        bool, typer.Option("--against-ledger", help="compare the ledger's accounts and careers too")
    ] = False,
    careers: Annotated[
        bool,
        typer.Option(
            "--careers/--no-careers",
            help="re-derive each liquidation's career from the career topics (read from their beginning)",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workers: Annotated[
        int, typer.Option("--workers", help="processes re-deriving side by side (default: one per core)")
    ] = 0,
) -> None:
    """Re-derive every decision of a time range with the ruleset that produced it."""
    from services.replay.engine import DECISION_TOPICS, Options
    from services.replay.engine import replay as run_replay

    topics = tuple(topic or DECISION_TOPICS)
    unknown = [t for t in topics if t not in DECISION_TOPICS]
    if unknown:
        console.print(
            f"[red]not a decision topic: {', '.join(unknown)} (one of {', '.join(DECISION_TOPICS)})[/red]"
        )
        raise typer.Exit(2)
    options = Options(
        parse_time(start),
        parse_time(end),
        topics,
        employer,
        verify,
        against_ledger,
        workers or os.cpu_count() or 1,
        careers,
    )
    if options.end <= options.start:
        console.print("[red]--to must be after --from[/red]")
        raise typer.Exit(2)
    settings = get_settings()
    with progress(console, enabled=not as_json) as report_progress:
        report = asyncio.run(run_replay(settings, options, report_progress))
    doc = report.as_json()
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        _print(doc)
    if not report.ok:
        raise typer.Exit(1)


def _print(doc: dict[str, Any]) -> None:
    console.print(
        f"replay {doc['from']} → {doc['to']}" + (f", employer {doc['employer']}" if doc["employer"] else "")
    )
    table = Table("events read", "re-derived", "equal", "mismatched", "lines", "seconds", "lines/s")
    table.add_row(
        f"{doc['events_read']:,}",
        f"{doc['rederived']:,}",
        f"{doc['equal']:,}",
        f"{doc['mismatched']:,}",
        f"{doc['lines']:,}",
        f"{doc['seconds']}",
        f"{doc['lines_per_s'] or 0:,}",
    )
    console.print(table)
    if doc["mismatches"]:
        m = Table("event id", "declaration", "field", "recorded", "re-derived", title="mismatches")
        for x in doc["mismatches"][:100]:
            m.add_row(
                x["event_id"],
                str(x.get("declaration_id") or x.get("claim_id")),
                x["field"],
                str(x["recorded"])[:40],
                str(x["rederived"])[:40],
            )
        console.print(m)
    for title, key in (
        ("unknown rulesets", "unknown_rulesets"),
        ("rulesets refused", "rulesets_refused"),
        ("events whose input was not found", "missing_inputs"),
        ("events without their audit record", "without_audit"),
        ("audit problems", "audit_problems"),
        (f"records of the decision topics that are no decision ({doc['unreadable']:,})", "unreadable_listed"),
    ):
        if doc[key]:
            console.print(f"[red]{title}[/red]: {json.dumps(doc[key], default=str)[:2000]}")
    careers = doc["careers"]
    if careers is not None:
        console.print(
            f"careers: {careers['rederived']:,} re-derived from {careers['events_read']:,} career events "
            f"({careers['passes']} pass(es)), {careers['equal']:,} equal to the snapshot carried"
        )
        for x in careers["not_rederivable"][:50]:
            console.print(f"  [red]not re-derivable[/red] {x['event_id']} ({x['claim_id']}): {x['reason']}")
    ledger = doc["ledger"]
    if ledger is not None:
        console.print(
            f"ledger: {ledger['months']:,} months, {ledger['dues']:,} dues, "
            f"{ledger['careers']:,} career rows compared"
        )
        for x in ledger["mismatches"][:50]:
            console.print(
                f"  [red]{x['table']}[/red] {x['key']} {x['field']}: "
                f"ledger {x['ledger']}, re-derived {x['rederived']}"
            )
    console.print("[green]OK[/green]" if doc["ok"] else "[red]MISMATCH[/red]")
