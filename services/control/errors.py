"""Errors the control commission answers with, as RFC 7807 problem+json (like the gateway),
and the statuses of the four-eyes rules."""

from __future__ import annotations

from services.common.problems import ORJSONResponse, Problem, ProblemResponse

__all__ = ["ORJSONResponse", "Problem", "ProblemResponse", "refused"]

# The rule a refusal names (the database's constraint, or the handler's) → HTTP status.
RULE_STATUS = {
    "decisions_one_per_controller": 409,  # the same controller twice
    "decisions_liquidation_pending": 409,  # a liquidation already decided
    "decisions_in_own_open_session": 409,
    "sessions_one_open_per_controller": 409,
    "sessions_sealed": 409,
    "decisions_reject_has_reason": 422,  # a rejection without a written reason
    "decision_known": 422,
    "status_known": 422,
    "decisions_not_the_filer": 403,  # maker ≠ checker
    "sessions_closed_by_opener": 403,
}
# What each rule means, in the words a controller reads (the API's `detail`, the page's message).
RULE_TEXT = {
    "decisions_one_per_controller": (
        "You have already decided on this liquidation: a second approval must come from another controller."
    ),
    "decisions_liquidation_pending": "This liquidation is already decided.",
    "decisions_in_own_open_session": "Decisions are taken in your own open session.",
    "sessions_one_open_per_controller": "You already have a control session open.",
    "sessions_sealed": "This session is closed: its minutes are sealed.",
    "decisions_reject_has_reason": "A rejection needs a written reason.",
    "decisions_not_the_filer": "The key that filed the claim may not decide on it (maker ≠ checker).",
    "sessions_closed_by_opener": "Only the controller who opened a session closes it.",
}
TITLES = {403: "Forbidden", 404: "Not found", 409: "Conflict", 422: "Invalid request"}


def refused(rule: str, detail: str) -> Problem:
    status = RULE_STATUS.get(rule, 409)
    return Problem(status, TITLES.get(status, "Conflict"), RULE_TEXT.get(rule, detail), rule=rule)
