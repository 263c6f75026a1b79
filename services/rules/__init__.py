"""Kalo's legal rules: pure functions of the declaration or claim and the parameters in force.

No I/O, no clock, no import from other services: the streaming services, the `kalo rules`
command, the control commission and the auditors' replay all call these same functions.

    ruleset = load_ruleset()
    assess_declaration(declaration, ruleset)   # RULES.md §2, §5
    assess_declaration_compact(declaration, ruleset)  # the same, lines as arrays (services)
    liquidate_claim(claim, ruleset)            # RULES.md §3, §5
    control_flags(claim, career, liquidation, ruleset, already_approved=False)  # RULES.md §4
    escalation_deadline(pending_since, ruleset)  # RULES.md §4: ESCALATED after the legal delay
    params_in_force(ruleset, date(2026, 10, 1))
    load_tree(files, expected_id="rs-…")        # a stored tree (path → bytes), e.g. for the replay
"""

from services.rules.assessment import assess_declaration, assess_declaration_compact, validate_declaration
from services.rules.career import counted_months, read_career, reference_salary
from services.rules.contributions import (
    COLUMNS,
    CompactLine,
    ItemSpec,
    LineSpec,
    assess_line,
    assess_lines_compact,
    gross_remuneration,
    item_amount,
    line_spec,
    smig_floor,
    totals,
)
from services.rules.control import (
    auto_approval_allowed,
    compared_fields,
    control_flags,
    control_review,
    escalation_deadline,
    escalation_flag,
    recompute,
    reference_window,
)
from services.rules.dates import add_months, completed_years, due_date, months_late, parse_period
from services.rules.declaration import (
    Declaration,
    DeclarationError,
    InvalidInput,
    Line,
    read_declaration,
)
from services.rules.liquidation import (
    Claim,
    Liquidation,
    liquidate,
    liquidate_claim,
    pension_amount,
    read_claim,
)
from services.rules.money import (
    Rate,
    apply_rate,
    apply_rate_decimal,
    format_rate,
    mean_half_up,
    round_half_up,
)
from services.rules.parameters import NotInForce, Parameter, ParameterFileError
from services.rules.ruleset import (
    ParameterInForce,
    Ruleset,
    RulesetMismatch,
    load_ruleset,
    load_tree,
    params_history,
    params_in_force,
    read_tree,
    ruleset_id,
    tree_id,
)
from services.rules.surcharge import surcharge, surcharge_rate

__all__ = [
    "COLUMNS",
    "Claim",
    "CompactLine",
    "Declaration",
    "DeclarationError",
    "InvalidInput",
    "ItemSpec",
    "Line",
    "LineSpec",
    "Liquidation",
    "NotInForce",
    "Parameter",
    "ParameterFileError",
    "ParameterInForce",
    "Rate",
    "Ruleset",
    "RulesetMismatch",
    "add_months",
    "apply_rate",
    "apply_rate_decimal",
    "assess_declaration",
    "assess_declaration_compact",
    "assess_line",
    "assess_lines_compact",
    "auto_approval_allowed",
    "compared_fields",
    "completed_years",
    "control_flags",
    "control_review",
    "counted_months",
    "due_date",
    "escalation_deadline",
    "escalation_flag",
    "format_rate",
    "gross_remuneration",
    "item_amount",
    "line_spec",
    "liquidate",
    "liquidate_claim",
    "load_ruleset",
    "load_tree",
    "mean_half_up",
    "months_late",
    "params_history",
    "params_in_force",
    "parse_period",
    "pension_amount",
    "read_career",
    "read_claim",
    "read_declaration",
    "read_tree",
    "recompute",
    "reference_salary",
    "reference_window",
    "round_half_up",
    "ruleset_id",
    "smig_floor",
    "surcharge",
    "surcharge_rate",
    "totals",
    "tree_id",
    "validate_declaration",
]
