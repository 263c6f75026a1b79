"""The compact assessment (what the services send) and the RULES.md §5 one agree to the franc."""

from __future__ import annotations

from typing import Any

from services.rules import COLUMNS

_PENSION = ("PVID", "RETRAITE")


def assert_compact_agrees(compact: dict[str, Any], verbose: dict[str, Any]) -> None:
    """Every field, line, item amount, base and rate of `verbose` is in `compact`, nothing more."""
    assert {k: v for k, v in compact.items() if k not in ("lines", "rates")} == {
        k: v for k, v in verbose.items() if k != "lines"
    }
    assert len(compact["lines"]) == len(verbose["lines"])
    for line, full in zip(compact["lines"], verbose["lines"], strict=True):
        worker_id, category, gross, base, floor_applied, pension_base, amo_base, amounts = line
        assert (worker_id, category, gross, base, floor_applied) == (
            full["worker_id"],
            full["category"],
            full["gross"],
            full["base"],
            full["floor_applied"],
        )
        assert len(amounts) == len(COLUMNS)
        filled = {}
        for item in full["items"]:
            col = COLUMNS.index((item["branch"], item["fund"], item["payer"]))
            filled[col] = item["amount"]
            assert compact["rates"][category][col] == item["rate"]
            if item["branch"] in _PENSION:
                assert pension_base == item["base"]
            elif item["branch"] == "AMO":
                assert amo_base == item["base"]
        assert amounts == [filled.get(col) for col in range(len(COLUMNS))]
        if not any(item["branch"] in _PENSION for item in full["items"]):
            assert pension_base == 0
        if not any(item["branch"] == "AMO" for item in full["items"]):
            assert amo_base == 0
