"""`kalo demo`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from services.cli.output import console
from services.cli.progress import progress
from services.common.settings import get_settings

if TYPE_CHECKING:
    from services.demo.pensions import PensionOutcome


def demo(
    employers: Annotated[int, typer.Option(help="employers (declarations) in the sample month")] = 300,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline to drain")] = 120.0,
    retiring: Annotated[
        int, typer.Option(help="retiring workers whose careers are imported and claims filed (0: none)")
    ] = 300,
    control_wait: Annotated[
        float, typer.Option(help="seconds to wait for the control commission's first decision")
    ] = 10.0,
) -> None:
    """Submit a sample month through the running gateway, import careers and file pension
    claims for retiring workers, and print what happened."""
    from services.demo.run import run_demo

    s = get_settings()
    with progress(console) as report:
        out = asyncio.run(
            run_demo(
                s,
                employers=employers,
                timeout_s=timeout,
                retiring=retiring,
                control_wait_s=control_wait,
                progress=report,
            )
        )
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
    if out.pensions is not None:
        print_pensions(out.pensions)
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
    if out.pensions is not None and out.pensions.pending:
        console.print(
            f"[red]{out.pensions.pending} claim(s) still not liquidated after {timeout:.0f} s[/red]"
        )
        raise typer.Exit(1)


def print_pensions(p: PensionOutcome) -> None:
    """The pension part of the demo: liquidations by regime, and the control's decisions."""
    console.print(
        f"[bold]pensions[/bold]: careers of {p.workers} retiring workers imported ({p.rows:,} months from "
        f"before Kalo, applied by the ledger in {p.imported_s:.1f} s), their month assessed by Kalo; "
        f"{p.claims} claims filed through the gateway, liquidated in {p.liquidated_s:.1f} s, "
        f"then {p.revisions} second claims (revisions)"
    )
    regimes = sorted({r for r, _ in p.decisions})
    table = Table("liquidation", *regimes, title="liquidations (RULES.md §3)")
    for decision in ("pension", "lump_sum", "rejected"):
        table.add_row(decision, *(str(p.decisions[(r, decision)]) for r in regimes))
    table.add_row("monthly pensions (XOF)", *(f"{p.monthly[r]:,}" for r in regimes))
    table.add_row("lump sums (XOF)", *(f"{p.lump_sums[r]:,}" for r in regimes))
    console.print(table)
    if p.reasons:
        reasons = ", ".join(f"{code} x{n}" for code, n in p.reasons.most_common())
        console.print(f"rejected liquidations by reason: {reasons}")
    if not p.control:
        console.print("control commission: not running — liquidations only (they wait for its decisions)")
        return
    control = Table("status", *regimes, "amounts (XOF)", title="control commission (RULES.md §4)")
    for status in ("approved", "pending_control", "rejected", "liquidated"):
        if any(p.statuses[(r, status)] for r in regimes):
            amounts = ", ".join(f"{r} {p.status_monthly[(status, r)]:,}" for r in regimes)
            control.add_row(status, *(str(p.statuses[(r, status)]) for r in regimes), amounts)
    console.print(control)
    if p.flags:
        console.print("flags: " + ", ".join(f"{code} x{n}" for code, n in p.flags.most_common()))
