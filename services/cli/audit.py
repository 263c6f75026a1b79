"""`kalo audit`: the control commission's tamper-evident audit log (services/control/audit).

    kalo audit keygen FILE                         # the log's Ed25519 key (FILE) and FILE.pub
    kalo audit verify [--heads FILE|topic] [--public-key FILE] [--json]
    kalo audit prove EVENT_ID                      # inclusion proof against the latest head
    kalo audit check-proof PROOF --head HEAD --public-key KEY   # offline: no database, no Kafka
    kalo audit export --subject ID [--csv]

`verify` and `check-proof` trust only the public key: exit 0 when everything checks, 1 with
the first record that breaks the log named.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.output import console
from services.common.settings import Settings, get_settings

app = typer.Typer(
    help="The tamper-evident audit log: keys, verification, proofs, exports.", no_args_is_help=True
)


def _public_key_path(given: Path | None, s: Settings) -> Path:
    if given is not None:
        return given
    if s.audit_public_key:
        return Path(s.audit_public_key)
    if s.audit_signing_key:
        return Path(f"{s.audit_signing_key}.pub")
    console.print("[red]no public key: give --public-key FILE (or set KALO_AUDIT_PUBLIC_KEY)[/red]")
    raise typer.Exit(2)


def _read_json(source: str) -> Any:
    """A JSON document from a file, `-` (stdin) or given inline."""
    if source == "-":
        return json.load(sys.stdin)
    if source.lstrip().startswith("{"):
        return json.loads(source)
    return json.loads(Path(source).read_text())


@app.command("keygen")
def keygen(
    path: Annotated[Path, typer.Argument(help="where to write the private key (PEM, mode 0600)")],
) -> None:
    """Make the log's Ed25519 signing key (FILE) and its public key (FILE.pub)."""
    from services.control.audit.heads import generate_key

    try:
        private, public, key_id = generate_key(path)
    except FileExistsError:
        console.print(f"[red]{path} exists: a signing key is never overwritten[/red]")
        raise typer.Exit(1) from None
    console.print(f"private key {private} (keep it secret: KALO_AUDIT_SIGNING_KEY)")
    console.print(f"public key  {public} (give it to the auditors)")
    console.print(f"key id      {key_id}")


@app.command("verify")
def verify_cmd(
    heads: Annotated[
        str | None,
        typer.Option("--heads", help="a heads file, or `topic` (kalo.audit.heads); default: the heads file"),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="the log's public key (PEM)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recompute the log from the store and check it against every signed head."""
    from services.control.audit.auditor import verify_store
    from services.control.audit.heads import load_public_key

    s = get_settings()
    key = load_public_key(_public_key_path(public_key, s))
    source = heads or s.heads_file
    try:
        report = asyncio.run(verify_store(s, source, key))
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    doc = report.as_json()
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        console.print(
            f"{doc['records']:,} records, {doc['heads_trusted']} of {doc['heads']} published heads verify "
            f"(signed size {doc['signed_size']:,}; {doc['unsigned_records']:,} records await a head)"
        )
        first = doc["first_bad_record"]
        if report.ok:
            head = doc["latest_head"]
            console.print(
                f"[green]OK[/green]: the log matches every head; "
                f"latest {head['tree_size']:,} at {head['time']}"
            )
        else:
            if first is not None:
                where = f"record {first['seq']}" if first["seq"] is not None else "the heads"
                console.print(f"[red]BROKEN at {where}[/red]: {first['message']}")
            for p in doc["problems"][1:20]:
                console.print(f"  {p['kind']}: {p['message']}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("prove")
def prove_cmd(
    event_id: Annotated[str, typer.Argument(help="the audit event's id")],
    out: Annotated[Path | None, typer.Option("--out", help="write the proof here (default: stdout)")] = None,
) -> None:
    """Print an inclusion proof of an audit event against the latest signed head."""
    from services.control.audit.auditor import NotFound, prove

    try:
        proof = asyncio.run(prove(get_settings(), uuid.UUID(event_id)))
    except (NotFound, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    text = json.dumps(proof, indent=2)
    if out:
        out.write_text(text + "\n")
    else:
        print(text)


@app.command("check-proof")
def check_proof_cmd(
    proof: Annotated[str, typer.Argument(help="the proof (a file, - or the JSON)")],
    head: Annotated[
        str, typer.Option("--head", help="the signed head to check it against (a file or the JSON)")
    ],
    public_key: Annotated[Path, typer.Option("--public-key", help="the log's public key (PEM)")],
) -> None:
    """Check an inclusion proof offline, trusting only the public key."""
    from services.control.audit.heads import BadHead, load_public_key
    from services.control.audit.merkle import ProofError
    from services.control.audit.verify import check_proof

    try:
        proof_doc = _read_json(proof)
        head_doc = _read_json(head)
        signed = check_proof(proof_doc, head_doc, load_public_key(public_key))
    except (ProofError, BadHead, ValueError, OSError) as exc:
        console.print(f"[red]INVALID[/red]: {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"[green]VALID[/green]: record {proof_doc['leaf_index']} (event {proof_doc.get('event_id')}) "
        f"is in the log of {signed.tree_size:,} records signed at {signed.time} by key {signed.key_id[:16]}…"
    )


@app.command("export")
def export_cmd(
    subject: Annotated[str, typer.Option("--subject", help="the declaration or claim id")],
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV for spreadsheets (formula cells neutralised)")
    ] = False,
) -> None:
    """Every audit record about a subject, in log order."""
    from services.common.csv_safe import to_csv
    from services.control.audit.auditor import subject_records

    records = asyncio.run(subject_records(get_settings(), subject))
    if not as_csv:
        print(json.dumps(records, indent=2))
        return
    header = [
        "seq",
        "event_id",
        "occurred_at",
        "producer",
        "actor",
        "action",
        "subject",
        "ruleset",
        "input_sha256",
        "output_sha256",
        "details",
    ]
    rows = []
    for r in records:
        d = r["data"]
        rows.append(
            [
                r["seq"],
                r["id"],
                r["occurred_at"],
                r["producer"],
                d.get("actor") or r["producer"],
                d["action"],
                d["subject"],
                d.get("ruleset"),
                d["input_sha256"],
                d["output_sha256"],
                json.dumps(d.get("details", {}), sort_keys=True, ensure_ascii=False),
            ]
        )
    sys.stdout.write(to_csv(header, rows))
