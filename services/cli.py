"""The `kalo` command: run services, manage topics, the database, employers, the DLQ."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.common.settings import get_settings

app = typer.Typer(
    help="Kalo: social-security declarations and pensions as event streams.", no_args_is_help=True
)
topics_app = typer.Typer(help="Kafka topics of the registry.", no_args_is_help=True)
db_app = typer.Typer(help="PostgreSQL schema.", no_args_is_help=True)
employers_app = typer.Typer(help="The employer registry and API keys.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for back offices, controllers and auditors.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(employers_app, name="employers")
app.add_typer(keys_app, name="keys")
dlq_app = typer.Typer(help="The dead-letter topic (kalo.dlq).", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
ledger_app = typer.Typer(help="The ledger's projections (accounts, careers).", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
try:
    from services import rules_cli

    app.add_typer(rules_cli.app, name="rules")
except ImportError:  # pragma: no cover - while the rules CLI is being written
    pass

console = Console()
SERVICES = ("gateway", "assessment", "ledger", "liquidation", "control")


@app.command()
def run(service: Annotated[str, typer.Argument(help=" | ".join(SERVICES))]) -> None:
    """Run one service in the foreground."""
    if service == "gateway":
        import uvicorn

        s = get_settings()
        # Several worker processes share the port; one of them relays the outbox (leader lock).
        uvicorn.run(
            "services.gateway.app:create_app",
            factory=True,
            workers=s.gateway_workers,
            host=s.gateway_host,
            port=s.gateway_port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=5,  # SIGTERM ends the gateway within seconds
        )
    elif service == "assessment":
        from services.assessment.agents import app as faust_app

        sys.argv = ["kalo-assessment", "worker", "--loglevel", "info"]
        faust_app.main()
    elif service == "ledger":
        from services.ledger.app import main as ledger_main

        ledger_main()
    elif service in ("liquidation", "control"):
        console.print(f"[red]{service} is not built yet[/red]")
        raise typer.Exit(2)
    else:
        console.print(f"[red]unknown service {service!r}; one of {', '.join(SERVICES)}[/red]")
        raise typer.Exit(2)


@topics_app.command("apply")
def topics_apply() -> None:
    """Create or update every topic of the registry."""
    from services.common.kafka import apply_topics

    for change in asyncio.run(apply_topics()):
        console.print(f"{change.topic}: {change.action}")


@topics_app.command("list")
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


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the SQL migrations of deploy/postgres not yet applied."""
    from services.common.db import migrate

    applied = asyncio.run(migrate())
    console.print(f"applied: {', '.join(applied)}" if applied else "schema up to date")


@employers_app.command("add")
def employers_add(
    employer_id: Annotated[str, typer.Argument(help="e.g. the INPS employer number")],
    regime: Annotated[str, typer.Option(help="INPS or CMSS")] = "INPS",
    risk_class: Annotated[int | None, typer.Option(help="ATMP risk class 1-4 (INPS)")] = None,
    filing: Annotated[str, typer.Option(help="monthly or quarterly")] = "monthly",
    name: Annotated[str | None, typer.Option(help="the employer's name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Register an employer and print its API key (shown only once)."""
    import asyncpg

    from services.gateway.registry import add_employer

    if regime not in ("INPS", "CMSS"):
        raise typer.BadParameter("regime must be INPS or CMSS", param_hint="--regime")
    if filing not in ("monthly", "quarterly"):
        raise typer.BadParameter("filing must be monthly or quarterly", param_hint="--filing")
    if regime == "INPS" and risk_class not in (1, 2, 3, 4):
        raise typer.BadParameter("an INPS employer needs a risk class 1-4", param_hint="--risk-class")

    async def go() -> str:
        conn = await asyncpg.connect(get_settings().dsn)
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


@keys_app.command("add")
def keys_add(
    role: Annotated[str, typer.Argument(help="backoffice | controller | auditor")],
    label: Annotated[str, typer.Option(help="who holds the key")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue an API key for a staff role (shown only once)."""
    import asyncpg

    from services.gateway.registry import add_staff_key

    async def go() -> str:
        conn = await asyncpg.connect(get_settings().dsn)
        try:
            return await add_staff_key(conn, role=role, label=label)
        finally:
            await conn.close()

    try:
        key = asyncio.run(go())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    print(json.dumps({"role": role, "label": label, "api_key": key}) if as_json else key)


@app.command()
def openapi(
    check: Annotated[bool, typer.Option("--check", help="exit 1 if contracts/openapi.json is stale")] = False,
) -> None:
    """Export the gateway's OpenAPI document to contracts/openapi.json."""
    from services.gateway.openapi import EXPORT, document, render

    text = render(document())
    if check:
        if not EXPORT.exists() or EXPORT.read_text() != text:
            console.print(f"[red]{EXPORT} is stale: run `kalo openapi`[/red]")
            raise typer.Exit(1)
        console.print(f"{EXPORT} is up to date")
        return
    EXPORT.write_text(text)
    console.print(f"wrote {EXPORT}")


@app.command()
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


@dlq_app.command("list")
def dlq_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every message parked in the dead-letter topic, with its error and origin."""
    from services.common.dlq_ops import read_dead_letters, summary

    rows = [summary(letter) for letter in asyncio.run(read_dead_letters(get_settings()))]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "at", "service", "source", "bytes", "error")
    for r in rows:
        table.add_row(r["id"], r["at"][:19], r["service"], r["source"], str(r["bytes"]), r["error"][:80])
    console.print(table)
    console.print(f"{len(rows)} dead letter(s)")


@dlq_app.command("replay")
def dlq_replay(letter_id: Annotated[str, typer.Argument(help="the id shown by `kalo dlq list`")]) -> None:
    """Send a dead letter's original bytes back to its topic."""
    from services.common.dlq_ops import replay

    try:
        result = asyncio.run(replay(get_settings(), letter_id))
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(1) from None
    console.print(f"replayed to {result['topic']} partition {result['partition']} offset {result['offset']}")


@app.command()
def demo(
    employers: Annotated[int, typer.Option(help="employers (declarations) in the sample month")] = 300,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline to drain")] = 120.0,
) -> None:
    """Submit a sample month through the running gateway and print what happened."""
    from services.demo import run_demo

    s = get_settings()
    out = asyncio.run(run_demo(s, employers=employers, timeout_s=timeout))
    console.print(
        f"[bold]Kalo demo[/bold]: {out.declarations} declarations ({out.lines:,} lines) submitted "
        f"through the gateway in {out.submitted_s:.1f} s, plus one correction"
    )
    table = Table("outcome", "declarations", "lines")
    for status in sorted(out.statuses):
        table.add_row(status, str(out.statuses[status]), f"{out.lines_by_status[status]:,}")
    console.print(table)
    if out.error_codes:
        codes = ", ".join(f"{code} x{n}" for code, n in out.error_codes.most_common())
        console.print(f"rejections by rule (RULES.md §2.4): {codes}")
    money = Table("assessed (XOF)", "amount", title="accepted declarations, corrections applied")
    for branch, amount in sorted(out.by_branch.items()):
        money.add_row(f"branch {branch}", f"{amount:,}")
    for fund, amount in sorted(out.by_fund.items()):
        money.add_row(f"fund {fund}", f"{amount:,}")
    money.add_row("employers' share", f"{out.employer_total:,}")
    money.add_row("employees' share", f"{out.employee_total:,}")
    money.add_row("[bold]total[/bold]", f"[bold]{out.employer_total + out.employee_total:,}[/bold]")
    console.print(money)
    if c := out.correction:
        console.print(
            f"correction: {c['id']} replaces {c['replaces']} ({c['employer']}); "
            f"its account per fund went from {c['before']} to {c['after']} (replaced, not added)"
        )
    rate = (out.declarations / out.drained_s) if out.drained_s else 0.0
    console.print(
        f"first receipt → last ledger commit: {out.drained_s:.1f} s ({rate:,.0f} declarations/s, "
        f"{out.lines / max(out.drained_s, 1e-9):,.0f} lines/s on this small sample)"
    )
    base = f"http://127.0.0.1:{s.gateway_port}"
    console.print(
        f"API docs: {base}/docs   metrics: {base}/metrics, "
        f"http://127.0.0.1:{s.assessment_web_port}/metrics, http://127.0.0.1:{s.ledger_metrics_port}/metrics"
    )
    if out.pending:
        console.print(f"[red]{out.pending} declaration(s) still not assessed after {timeout:.0f} s[/red]")
        raise typer.Exit(1)


@ledger_app.command("rebuild")
def ledger_rebuild(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Empty the ledger's projections and replay its topics from the beginning (ledger stopped)."""
    from services.ledger.app import rebuild
    from services.ledger.rebuild import LedgerRunning

    try:
        counts = asyncio.run(rebuild(get_settings()))
    except LedgerRunning as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(counts))
        return
    console.print(", ".join(f"{k} {v:,}" for k, v in counts.items()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
