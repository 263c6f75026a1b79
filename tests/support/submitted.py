"""Build the `declaration.submitted` message the way the gateway does (the load tests' and the tests')."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from contracts.declarations import LINE_FIELDS, DeclarationSubmitted, Employer
from contracts.envelope import Envelope, derived_id, wrap


def submitted_event(
    *,
    declaration_id: str,
    employer: Mapping[str, Any],
    period: str,
    lines: Sequence[Mapping[str, Any]],
    submitted_at: datetime,
    payload_sha256: str,
    replaces: str | None = None,
) -> Envelope[DeclarationSubmitted]:
    """The envelope, with an id derived from the declaration id (a re-send is a duplicate)."""
    data = DeclarationSubmitted(
        declaration_id=declaration_id,
        employer=Employer(**employer),
        period=period,
        submitted_at=submitted_at,
        replaces=replaces,
        payload_sha256=payload_sha256,
        lines=[tuple(line.get(f, 0) for f in LINE_FIELDS) for line in lines],  # type: ignore[misc]
    )
    return wrap(
        data,
        producer="gateway",
        correlation_id=declaration_id,
        event_id=derived_id(declaration_id, DeclarationSubmitted.TYPE),
        occurred_at=submitted_at,
    )
