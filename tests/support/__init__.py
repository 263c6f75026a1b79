"""Helpers the tests and the benchmarks share (a sandbox on the running stack, message builders).

Nothing here ships: the wheel holds `contracts` and `services` only, and no module of theirs imports this.
"""
