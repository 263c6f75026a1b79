"""`kalo demo`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from services.cli.output import console
from services.common.settings import get_settings


def demo(
    employers: Annotated[int, typer.Option(help="employers (declarations) in the sample month")] = 300,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline to drain")] = 120.0,
) -> None:
    """Submit a sample month through the running gateway and print what happened."""
    from services.demo.run import run_demo

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
        f"http://127.0.0.1:{s.assessment_web_port}/metrics, http://127.0.0.1:{s.ledger_metrics_port}/metrics,"
        f" http://127.0.0.1:{s.control_metrics_port}/metrics"
    )
    console.print(f"control commission (controllers' page): http://127.0.0.1:{s.control_port}/")
    if out.pending:
        console.print(f"[red]{out.pending} declaration(s) still not assessed after {timeout:.0f} s[/red]")
        raise typer.Exit(1)
