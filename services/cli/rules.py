"""`kalo rules`: the legal rules on the command line (RULES.md §5).

    kalo rules assess [FILE|-] [--jsonl]      one declaration in, its assessment out
    kalo rules liquidate [FILE|-] [--jsonl]   one claim with its career in, its liquidation out
    kalo rules params [--at DATE] [--unconfirmed] [--history] [--json]

Exit 0 for every computed result, a rejection included; exit 2 when the input is not JSON
or misses a required field (the message on stderr names it). With --jsonl every input line
gives one output line, in order; a line that cannot be read gives `{"input_line", "error"}`
and the command ends with exit 2 after the whole stream.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import click
import orjson
import typer

from services.rules import (
    InvalidInput,
    ParameterFileError,
    Ruleset,
    assess_declaration,
    liquidate_claim,
    load_ruleset,
    params_history,
    params_in_force,
)
from services.rules.ruleset import ParameterInForce, jsonable

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    help="The legal rules: assess declarations, liquidate pension claims, list parameters.",
    no_args_is_help=True,
)

Rule = Callable[[Mapping[str, Any], Ruleset], dict[str, Any]]
_BATCH = 512  # results per write: one syscall per batch, not per line

FileArg = Annotated[str, typer.Argument(help="a JSON file, or - for standard input")]
JsonlOpt = Annotated[bool, typer.Option("--jsonl", help="one JSON document per line in and out")]
ParamsOpt = Annotated[
    Path | None,
    typer.Option("--parameters", help="another parameter tree (default: the package's own)"),
]


@app.command()
def assess(file: FileArg = "-", jsonl: JsonlOpt = False, parameters: ParamsOpt = None) -> None:
    """Assess a declaration: items per worker, totals, due date, lateness, surcharge."""
    _run(file, jsonl, parameters, assess_declaration)


@app.command()
def liquidate(file: FileArg = "-", jsonl: JsonlOpt = False, parameters: ParamsOpt = None) -> None:
    """Liquidate a pension claim from the worker's career."""
    _run(file, jsonl, parameters, liquidate_claim)


@app.command()
def params(
    at: Annotated[
        str | None, typer.Option(help="the date YYYY-MM-DD (default: today)", show_default=False)
    ] = None,
    unconfirmed: Annotated[
        bool, typer.Option("--unconfirmed", help="only the values that need a legal check")
    ] = False,
    history: Annotated[
        bool, typer.Option("--history", help="every dated value, not only those in force")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    parameters: ParamsOpt = None,
) -> None:
    """List the legal parameters in force at a date, with status and reference."""
    try:
        when = date.fromisoformat(at) if at else date.today()
    except ValueError:
        raise typer.BadParameter(f"{at!r} is not a date YYYY-MM-DD", param_hint="--at") from None
    ruleset = _ruleset(parameters)
    rows = params_history(ruleset) if history else params_in_force(ruleset, when)
    if unconfirmed:
        rows = [r for r in rows if r.status == "unconfirmed"]
    if as_json:
        doc = {
            "ruleset": ruleset.id,
            "at": None if history else when.isoformat(),
            "parameters": [r.as_json() for r in rows],
        }
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    from rich.console import Console

    title = f"ruleset {ruleset.id} — " + ("all dated values" if history else f"in force on {when}")
    print_params_table(Console(), title, rows)


PARAMS_COLUMNS = ("name", "value", "unit", "status", "since", "reference")
_MIN_REFERENCE_WIDTH = 24  # narrower than this, the wrapped references are unreadable


def print_params_table(console: Console, title: str, rows: list[ParameterInForce]) -> None:
    """The rows as a table, never cut: every name, value and reference in full.

    On a terminal wide enough for the name, value, unit, status and since columns at their
    full width, a rich table whose reference column takes the rest of the width and wraps.
    Otherwise (piped, redirected, or a narrow terminal) plain text: one row per line,
    columns padded to their widest cell, so that `grep` and `cut` see whole values.
    """
    from rich.cells import cell_len
    from rich.markup import escape
    from rich.table import Table

    cells = [(r.name, _show(r.value), r.unit, r.status, r.since.isoformat(), r.reference) for r in rows]
    widths = [max([cell_len(c), *(cell_len(row[i]) for row in cells)]) for i, c in enumerate(PARAMS_COLUMNS)]
    # A rich table (heavy head box, one space of padding each side) spends 3 columns per
    # column and 1 more for the closing edge.
    reference_width = console.width - sum(widths[:-1]) - 3 * len(PARAMS_COLUMNS) - 1
    if console.is_terminal and reference_width >= min(widths[-1], _MIN_REFERENCE_WIDTH):
        table = Table(title=title)
        for column, width in zip(PARAMS_COLUMNS[:-1], widths[:-1], strict=True):
            table.add_column(column, no_wrap=True, min_width=width)
        table.add_column("reference", width=min(reference_width, widths[-1]), overflow="fold")
        for row in cells:
            shown = [escape(cell) for cell in row]  # a "[...]" in a reference is text, not markup
            if row[3] != "confirmed":
                shown[3] = f"[yellow]{shown[3]}[/yellow]"
            table.add_row(*shown)
        console.print(table)
        return
    lines = [title]
    for row in [PARAMS_COLUMNS, *cells]:
        padded = [
            cell + " " * (width - cell_len(cell)) for cell, width in zip(row[:-1], widths[:-1], strict=True)
        ]
        lines.append("  ".join([*padded, row[-1]]))
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def _show(value: Any) -> str:
    shown = jsonable(value)
    if shown is None:
        return "—"
    if isinstance(shown, dict):
        return ", ".join(f"{k}: {v}" for k, v in shown.items())
    return str(shown).lower() if isinstance(shown, bool) else str(shown)


def _ruleset(parameters: Path | None) -> Ruleset:
    try:
        return load_ruleset(parameters)
    except (ParameterFileError, FileNotFoundError) as exc:
        _fail(f"cannot load the parameters: {exc}", code=1)


def _fail(message: str, *, code: int = 2) -> Any:
    click.echo(f"kalo rules: {message}", err=True)
    raise typer.Exit(code)


def _run(file: str, jsonl: bool, parameters: Path | None, rule: Rule) -> None:
    ruleset = _ruleset(parameters)
    out = click.get_binary_stream("stdout")
    if file == "-":
        _process(click.get_binary_stream("stdin"), out, jsonl, ruleset, rule)
        return
    try:
        stream = open(file, "rb")  # noqa: SIM115 - closed below, after streaming
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    with stream:
        _process(stream, out, jsonl, ruleset, rule)


def _process(stream: IO[bytes], out: IO[bytes], jsonl: bool, ruleset: Ruleset, rule: Rule) -> None:
    if not jsonl:
        try:
            result = rule(orjson.loads(stream.read()), ruleset)
        except orjson.JSONDecodeError as exc:
            _fail(f"input is not JSON: {exc}")
        except InvalidInput as exc:
            _fail(str(exc))
        out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        out.flush()
        return
    # Millions of short-lived dicts, no reference cycles: the cyclic collector would spend a
    # quarter of the run re-scanning the modules and the ruleset. Park them and collect rarely.
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)
    try:
        failures = _stream(stream, out, ruleset, rule)
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
    if failures:
        _fail(f"{failures} input line(s) could not be read")


def _stream(stream: IO[bytes], out: IO[bytes], ruleset: Ruleset, rule: Rule) -> int:
    """One result per input line, in order, written in batches; the number of unreadable lines."""
    dumps, loads = orjson.dumps, orjson.loads
    batch: list[bytes] = []
    failures = 0
    for number, raw in enumerate(stream, 1):
        try:
            batch.append(dumps(rule(loads(raw), ruleset)))
        except (orjson.JSONDecodeError, InvalidInput) as exc:
            if not raw.strip():
                continue  # a blank line is no document
            failures += 1
            reason = f"input is not JSON: {exc}" if isinstance(exc, orjson.JSONDecodeError) else str(exc)
            click.echo(f"kalo rules: line {number}: {reason}", err=True)
            batch.append(dumps({"input_line": number, "error": reason}))
        if len(batch) >= _BATCH:
            batch.append(b"")
            out.write(b"\n".join(batch))
            batch.clear()
    if batch:
        batch.append(b"")
        out.write(b"\n".join(batch))
    out.flush()
    return failures
