"""ESCALATED (RULES.md §4): a liquidation pending past the legal delay to answer."""

from datetime import UTC, datetime, timedelta

from services.rules import escalation_deadline, escalation_flag, load_ruleset

RULESET = load_ruleset()


def test_a_liquidation_is_escalated_thirty_days_after_it_arrived() -> None:
    arrived = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    deadline = escalation_deadline(arrived, RULESET)
    assert deadline == arrived + timedelta(days=30)
    flag = escalation_flag(arrived, deadline)
    assert flag["code"] == "ESCALATED"
    assert "2026-12-01" in flag["message"] and "2026-12-31" in flag["message"]
