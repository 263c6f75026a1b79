"""Who sends and who receives each topic: Kalo's services and the parties outside it (the
AsyncAPI document's `send` and `receive` operations, contracts/generate.py)."""

from __future__ import annotations

from dataclasses import dataclass

SUBMITTED = "kalo.declarations.submitted"
ASSESSED = "kalo.declarations.assessed"
REJECTED = "kalo.declarations.rejected"
AMO = "kalo.amo.deductions"
REGISTRATIONS = "kalo.workers.registrations"
CAREERS = "kalo.careers.imported"
CLAIMS = "kalo.pensions.claims"
LIQUIDATIONS = "kalo.pensions.liquidations"
DECISIONS = "kalo.control.decisions"
APPROVED = "kalo.pensions.approved"
AUDIT = "kalo.audit"
HEADS = "kalo.audit.heads"
RULESETS = "kalo.rulesets"
DLQ = "kalo.dlq"


@dataclass(frozen=True)
class Party:
    name: str
    description: str
    sends: tuple[str, ...] = ()
    receives: tuple[str, ...] = ()


# Every consumer parks what it cannot process in kalo.dlq and records that on kalo.audit.
PARTIES: tuple[Party, ...] = (
    Party(
        "gateway",
        "the HTTP API of employers and back offices, through its outbox relay",
        sends=(SUBMITTED, CLAIMS, CAREERS, AUDIT),
    ),
    Party(
        "assessment",
        "the stream processor (faust) that assesses declarations",
        sends=(ASSESSED, REJECTED, AMO, REGISTRATIONS, AUDIT, RULESETS, DLQ),
        receives=(SUBMITTED,),
    ),
    Party(
        "liquidation",
        "the stream processor (faust) that liquidates pension claims (careers read from the ledger)",
        sends=(LIQUIDATIONS, AUDIT, RULESETS, DLQ),
        receives=(CLAIMS,),
    ),
    Party(
        "ledger",
        "the projections (reports, accounts, careers, claims) that the gateway reads",
        sends=(AUDIT, DLQ),
        receives=(ASSESSED, REJECTED, REGISTRATIONS, CAREERS, LIQUIDATIONS, DECISIONS, APPROVED),
    ),
    Party(
        "control",
        "the control commission: a-priori control of liquidations, and the signed audit store",
        sends=(DECISIONS, APPROVED, AUDIT, HEADS, DLQ),
        receives=(LIQUIDATIONS, AUDIT),
    ),
    Party(
        "backOffices",
        "the institutions' back offices: INPS and CMSS (contributions, pensions), CANAM (AMO)",
        receives=(ASSESSED, AMO, APPROVED),
    ),
    Party(
        "auditors",
        "`kalo replay` (re-derives every amount with the ruleset that produced it) and "
        "`kalo audit verify` (checks the signed heads)",
        receives=(SUBMITTED, ASSESSED, REJECTED, CLAIMS, LIQUIDATIONS, AUDIT, HEADS, RULESETS),
    ),
    Party(
        "operators",
        "`kalo dlq`: lists parked messages and replays them to their source topic (recorded on kalo.audit)",
        sends=(AUDIT,),
        receives=(DLQ,),
    ),
)
