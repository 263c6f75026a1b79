"""The auditors' replay (`kalo replay`, services/cli/replay.py): the decision topics of a
time range read again, every amount re-derived with the ruleset that produced it, and
compared with what was recorded — and, on demand, with the audit log and the ledger.
The logic is in `engine.py`; no service imports it."""
