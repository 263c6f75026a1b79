"""The business report of a declaration, expanded from the compact assessed event."""

from __future__ import annotations

from typing import Any

from contracts.declarations import ASSESSED_LINE_FIELDS, ITEM_COLUMNS
from services.rules.contributions import expand_assessed_lines


def expand_lines(assessed: dict[str, Any]) -> list[dict[str, Any]]:
    """Compact lines → the RULES.md §5 shape (items with branch, fund, payer, rate, base)."""
    return expand_assessed_lines(assessed["lines"], assessed["rates"])


def business_report(row: dict[str, Any]) -> dict[str, Any] | None:
    """What the employer reads: accepted lines with their items, or every error."""
    report = row.get("report")
    if report is None:
        return None
    if row["status"] == "rejected":
        doc = {"errors": report["errors"], "ruleset": report["ruleset"]}
        if report.get("errors_omitted"):
            # Very many errors: the first ones of each code, and how many there were.
            doc["error_counts"] = report["error_counts"]
            doc["errors_omitted"] = report["errors_omitted"]
        return doc
    return {
        "ruleset": report["ruleset"],
        "due_date": report["due_date"],
        "months_late": report["months_late"],
        "surcharge": report["surcharge"],
        "totals": report["totals"],
        "warnings": report.get("warnings", []),
        "lines": expand_lines(report),
    }


def difference(row: dict[str, Any]) -> dict[str, Any] | None:
    """What a corrective declaration changes against the one it replaces: new − old per
    branch, per fund, per payer and in total (a rejected declaration counts as zero).
    None until both are assessed."""
    if row["status"] == "received" or row.get("replaced_status") in (None, "received"):
        return None
    new = row["totals"] if row["status"] == "accepted" else None
    old = row["replaced_totals"] if row["replaced_status"] == "accepted" else None
    if new is None:
        # A rejected correction changes nothing: the month keeps the declaration it replaced.
        return {"applied": False, "reason": "the correction was rejected; the month is unchanged"}
    diff: dict[str, Any] = {"applied": True, "replaces": row["replaces"]}
    for key in ("by_branch", "by_fund"):
        names = sorted(set(new[key]) | set((old or {}).get(key, {})))
        diff[key] = {n: new[key].get(n, 0) - (old or {}).get(key, {}).get(n, 0) for n in names}
    for key in ("employer", "employee", "total"):
        diff[key] = new[key] - (old or {}).get(key, 0)
    return diff


def report_table(row: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The business report as a table (header, rows) for a CSV download: accepted, one row
    per worker with each item's amount; rejected, one row per error."""
    report = row["report"]
    if row["status"] == "rejected":
        header = ["line", "worker_id", "code", "message"]
        return header, [[e["line"], e["worker_id"], e["code"], e["message"]] for e in report["errors"]]
    header = [*ASSESSED_LINE_FIELDS[:5], *ITEM_COLUMNS]
    return header, [[*line[:5], *line[7]] for line in report["lines"]]
