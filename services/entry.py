"""The `kalo` command. `kalo rules …` is dispatched before the services' imports are paid for:
auditors run it over whole months in one process, and pipelines call it case by case."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["rules"]:
        from services.cli.rules import app

        app(args=sys.argv[2:], prog_name="kalo rules")
    else:
        from services.cli.main import main as cli_main

        cli_main()
