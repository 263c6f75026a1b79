"""The employer registry's word on a declaration (rules beyond RULES.md §2.4, Kalo's own).

The registry is the truth about an employer: it must exist, be active, and the declaration
must state the regime, risk class and filing it is registered with. The services read the
record; the decision is taken here, so a replay given the same record re-derives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.rules.declaration import INPS, DeclarationError

UNKNOWN_EMPLOYER = "UNKNOWN_EMPLOYER"
EMPLOYER_INACTIVE = "EMPLOYER_INACTIVE"
REGISTRY_MISMATCH = "REGISTRY_MISMATCH"
# What a registry record holds: {"id", "regime", "risk_class", "filing", "active"}.
RECORD_FIELDS = ("id", "regime", "risk_class", "filing", "active")


def registry_errors(declared: Mapping[str, Any], record: Mapping[str, Any] | None) -> list[DeclarationError]:
    """Every way the declaration's `employer` disagrees with its registry `record`
    (None: the employer is not registered)."""
    employer_id = declared.get("id")
    if record is None:
        return [_error(UNKNOWN_EMPLOYER, f"employer {employer_id} is not in the registry")]
    errors = []
    if not record.get("active"):
        errors.append(_error(EMPLOYER_INACTIVE, f"employer {employer_id} is not active"))
    for name in ("regime", "risk_class", "filing"):
        said, registered = declared.get(name), record.get(name)
        if name == "risk_class" and record.get("regime") != INPS:
            continue  # only INPS employers have a class
        if said != registered:
            errors.append(
                _error(REGISTRY_MISMATCH, f"employer.{name} is {said!r} but the registry says {registered!r}")
            )
    return errors


def _error(code: str, message: str) -> DeclarationError:
    return DeclarationError(None, None, code, message)
