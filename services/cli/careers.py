"""`kalo careers import FILE.csv`: careers from before Kalo, as a back office uploads them."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.output import console
from services.cli.progress import Report, progress
from services.common.settings import get_settings

app = typer.Typer(help="Careers from before Kalo.", no_args_is_help=True)


@app.command("import")
def careers_import(
    file: Annotated[Path, typer.Argument(help="CSV with the header worker_id,period,employer_id,base")],
    label: Annotated[
        str, typer.Option(help="who imports (recorded with the import)")
    ] = "kalo careers import",
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the ledger to apply it (0: do not wait)")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Import a careers file: the same checks and the same path as POST /v1/careers/import
    (the receipt and one message per worker in the gateway's outbox; its relay publishes
    them, the ledger writes them). Exit 2, every bad cell named, for a file with errors."""
    from services.gateway.career_csv import parse_careers
    from services.gateway.errors import Problem

    try:
        rows, _ = parse_careers(file.read_bytes())
    except Problem as problem:
        doc = problem.body()
        if as_json:
            print(json.dumps(doc))
        else:
            console.print(f"[red]{doc['title']}: {doc['detail']}[/red]")
            for e in doc.get("errors", []):
                column = f", column {e['column']}" if e.get("column") else ""
                console.print(f"  row {e['row']}{column}: {e['message']}", markup=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None
    with progress(console, enabled=not as_json) as report:
        receipt = asyncio.run(_import(file.read_bytes(), rows, label, wait, report))
    if as_json:
        print(json.dumps(receipt))
        return
    console.print(
        f"import {receipt['import_id']}: {receipt['rows']:,} rows for {receipt['workers']:,} workers queued"
    )
    if wait:
        applied = receipt.get("applied_workers", 0)
        console.print(f"the ledger applied {applied:,} of {receipt['workers']:,} workers")
        if applied < receipt["workers"]:
            console.print(
                "[red]not all applied yet: is the gateway (its outbox relay) and the ledger running?[/red]"
            )
            raise typer.Exit(1)


async def _import(data: bytes, rows: list[Any], label: str, wait: float, report: Report) -> dict[str, Any]:
    from services.common.db import connect
    from services.common.hashing import sha256_hex
    from services.common.kafka import topic
    from services.gateway import handlers
    from services.gateway.adapters import PgStore
    from services.gateway.registry import Principal

    settings = get_settings()
    conn = await connect("gateway", settings)  # as the gateway: its receipts and outbox
    try:
        store = PgStore(conn)
        who = Principal("backoffice", None, label, "cli")
        report("writing the receipt and the outbox", 0, None)
        receipt, _ = await handlers.import_careers(
            store,
            who,
            rows,
            payload_sha256=sha256_hex(data),
            idempotency_key=None,
            now=datetime.now(UTC),
            topic=topic(handlers.CAREERS_IMPORTED, settings),
            audit_topic=topic("kalo.audit", settings),
        )
        report("writing the receipt and the outbox", 1, 1)
        deadline = time.monotonic() + wait
        while wait:
            row = await store.career_import(receipt["import_id"])
            assert row is not None
            receipt["applied_workers"] = row["applied_workers"]
            report("workers applied by the ledger", row["applied_workers"], receipt["workers"])
            if row["applied_workers"] >= receipt["workers"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        return receipt
    finally:
        await conn.close()
