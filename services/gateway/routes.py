"""HTTP routes: thin — decode, call a handler, answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError

from services.common.hashing import sha256_hex
from services.common.kafka import topic
from services.gateway import handlers
from services.gateway.auth import authenticate, require
from services.gateway.career_csv import parse_careers
from services.gateway.csv_upload import parse_lines, parse_number, shown
from services.gateway.errors import Problem
from services.gateway.metrics import RECEIPT_SECONDS, RECEIPTS
from services.gateway.registry import Principal, registered_employer
from services.gateway.responses import ORJSONResponse
from services.gateway.schemas import (
    MAX_LINES,
    Account,
    CareerImportReceipt,
    ClaimIn,
    ClaimList,
    ClaimReceipt,
    ClaimView,
    DeclarationIn,
    DeclarationList,
    DeclarationView,
    ProblemDoc,
    Receipt,
)
from services.gateway.validation import problem_from_validation

router = APIRouter(prefix="/v1")
# The media type each route's body must have (anything else: 415).
BODY_MEDIA_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/v1/declarations"): ("application/json",),
    ("POST", "/v1/declarations/upload"): ("multipart/form-data",),
    ("POST", "/v1/pension-claims"): ("application/json",),
    ("POST", "/v1/careers/import"): ("multipart/form-data",),
}
Caller = Annotated[Principal, Depends(authenticate)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        description="same key and body: the same receipt (202, `Idempotent-Replayed: true`); "
        "same key, other body: 409",
    ),
]

# When each problem happens (every one is application/problem+json, see services.gateway.openapi).
PROBLEMS: dict[int, str] = {
    400: "Malformed: a NUL character in the path or the query, a body that is not JSON, a file that is "
    "not UTF-8",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role or employer may not do this",
    404: "No such resource (or not registered)",
    409: "Conflict: the Idempotency-Key was used with another body, or the month (the claim) is "
    "already filed or corrected; the problem names the other one",
    413: "The body is over the size limit, or has too many lines or rows",
    415: "The body is not in the media type this endpoint reads",
    422: "Invalid content: `errors` lists every bad field, line (and CSV row and column)",
    429: "Too many requests for this key, or too many failed keys from this address: retry after "
    "`Retry-After` seconds",
    503: "PostgreSQL or Kafka is away for a moment (nothing was stored): send the same request again "
    "after `Retry-After` seconds",
}
RETRY_AFTER = {"$ref": "#/components/headers/Retry-After"}  # defined by services.common.openapi
# What any route may answer: a NUL in the path or query (400, app.NoNul), no or a bad key (401),
# a value PostgreSQL cannot store (422), the rate limits (429), an outage (503).
EVERY_ROUTE = (400, 401, 422, 429, 503)


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ProblemDoc, "description": PROBLEMS[code]} for code in sorted(set(codes))}


# A body: over the size limit (413, app.BodyLimit), in another media type (415, app.MediaTypes).
SUBMIT_ERRORS = _problems(*EVERY_ROUTE, 403, 409, 413, 415)
READ_ERRORS = _problems(*EVERY_ROUTE, 403, 404)
LIST_ERRORS = _problems(*EVERY_ROUTE, 403)
# A receipt: 202 for a new submission and for a repeat of it (same key and body), which says so.
RECEIPT = {
    202: {
        "description": "Received: the receipt (a repeat of an earlier submission gets the same one)",
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true` when this is the receipt of an earlier identical submission",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    }
}


@router.post(
    "/declarations",
    operation_id="submitDeclarationJson",
    tags=["declarations"],
    status_code=202,
    response_model=Receipt,
    responses={**RECEIPT, **SUBMIT_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeclarationIn"}}},
        }
    },
    summary="Submit a monthly declaration (JSON)",
)
async def submit_json(request: Request, caller: Caller, idempotency_key: IdempotencyKey = None) -> Response:
    """The body is a `DeclarationIn`. The receipt (202) says the declaration is received, not
    accepted: the assessment decides shortly after, and GET /v1/declarations/{declaration_id}
    shows the outcome and the business report."""
    body = await request.body()
    try:
        decl = DeclarationIn.model_validate_json(body)
    except ValidationError as exc:
        raise problem_from_validation(exc) from None
    return await _submit(request, caller, decl, sha256_hex(body), idempotency_key, "json")


@router.post(
    "/declarations/upload",
    operation_id="submitDeclarationCsv",
    tags=["declarations"],
    status_code=202,
    response_model=Receipt,
    responses={**RECEIPT, **SUBMIT_ERRORS},
    summary="Submit a monthly declaration (CSV file)",
    description=(
        "multipart/form-data with `file` (UTF-8 CSV, comma or semicolon, a header row; "
        "columns worker_id, category, days_worked, base_salary, and optionally bonuses, "
        "benefits_in_kind, expense_reimbursements) and `period`; `replaces` for a correction. "
        "regime, risk_class and filing default to the employer's registration. The receipt's "
        "SHA-256 is that of the file."
    ),
)
async def submit_csv(
    request: Request,
    caller: Caller,
    file: Annotated[UploadFile, File(description="the CSV file")],
    period: Annotated[str, Form(min_length=1, max_length=16, examples=["2026-10"])],
    replaces: Annotated[str | None, Form(max_length=64)] = None,
    regime: Annotated[str | None, Form(max_length=16)] = None,
    risk_class: Annotated[str | None, Form(max_length=16, description="an integer")] = None,
    filing: Annotated[str | None, Form(max_length=16)] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    require(caller, "employer")
    data = await file.read()
    lines, rows = parse_lines(data, MAX_LINES)
    registered = await registered_employer(request.app.state.pool, caller)
    employer = {
        "id": caller.employer_id,
        "regime": regime or registered["regime"],
        "risk_class": _form_integer("risk_class", risk_class, registered["risk_class"]),
        "filing": filing or registered["filing"],
    }
    doc = {"employer": employer, "period": period, "replaces": replaces or None, "lines": lines}
    try:
        decl = DeclarationIn.model_validate(doc)
    except ValidationError as exc:
        raise problem_from_validation(exc, rows=rows) from None
    return await _submit(request, caller, decl, sha256_hex(data), idempotency_key, "csv")


def _form_integer(name: str, raw: str | None, default: int | None) -> int | None:
    """A form field read like a CSV number cell (ASCII digits), the registration when empty."""
    if raw is None or raw.strip() == "":
        return default
    number = parse_number(raw.strip())
    if number is None:
        message = f"{shown(raw)} is not a whole number (digits 0-9)"
        raise Problem(
            422,
            "Invalid declaration",
            message,
            errors=[{"field": name, "line": None, "message": message, "type": "int_parsing"}],
        )
    return number


async def _submit(
    request: Request,
    caller: Principal,
    decl: DeclarationIn,
    sha: str,
    idempotency_key: str | None,
    channel: str,
) -> Response:
    with RECEIPT_SECONDS.labels(channel).time():
        receipt, created = await handlers.submit_declaration(
            request.app.state.store,
            caller,
            decl,
            payload_sha256=sha,
            idempotency_key=idempotency_key,
            now=datetime.now(UTC),
            topic=topic(handlers.SUBMITTED, request.app.state.settings),
            max_message_bytes=request.app.state.settings.max_message_bytes - 65_536,
            audit_topic=topic("kalo.audit", request.app.state.settings),
        )
    if created:
        RECEIPTS.labels(channel).inc()
    return _receipt(request, receipt.model_dump(), created)


def _receipt(request: Request, receipt: dict[str, Any], created: bool) -> Response:
    """202 with the receipt; a new one wakes the outbox relay, a repeated submission gets the
    same receipt and says so in a header."""
    if created:
        request.app.state.relay.wake()
    headers = None if created else {"Idempotent-Replayed": "true"}
    return ORJSONResponse(receipt, status_code=202, headers=headers)


@router.get(
    "/declarations/{declaration_id}",
    operation_id="getDeclaration",
    tags=["declarations"],
    response_model=DeclarationView,
    responses=READ_ERRORS,
    summary="Status, business report and, for a correction, its difference",
)
async def get_declaration(declaration_id: str, request: Request, caller: Caller) -> Response:
    """`received` until the assessment has decided, then `accepted` or `rejected` with every
    line's outcome and error codes; an employer reads only its own declarations."""
    doc = await handlers.get_declaration(request.app.state.store, caller, declaration_id)
    return ORJSONResponse(doc)


@router.get(
    "/declarations/{declaration_id}/report.csv",
    operation_id="getDeclarationReportCsv",
    tags=["declarations"],
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "The business report as CSV",
            "headers": {
                "Content-Disposition": {
                    "description": "`attachment`, the file named after the declaration",
                    "schema": {"type": "string"},
                }
            },
        },
        **_problems(*EVERY_ROUTE, 403, 404),
        409: {
            "model": ProblemDoc,
            "description": "Received but not assessed yet: retry after `Retry-After` seconds",
            "headers": {"Retry-After": RETRY_AFTER},
        },
    },
    summary="The business report as CSV (cells a spreadsheet would run as formulas are neutralised)",
)
async def declaration_report_csv(declaration_id: str, request: Request, caller: Caller) -> Response:
    """The business report of GET /v1/declarations/{declaration_id} as a file; 409 with
    `Retry-After` until the declaration is assessed."""
    text = await handlers.declaration_report_csv(request.app.state.store, caller, declaration_id)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_safe_name(declaration_id)}.csv"'},
    )


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80]


@router.get(
    "/declarations",
    operation_id="listDeclarations",
    tags=["declarations"],
    response_model=DeclarationList,
    responses=LIST_ERRORS,
    summary="The caller's declarations (staff: any employer's), newest first",
)
async def list_declarations(
    request: Request,
    caller: Caller,
    period: Annotated[str | None, Query(max_length=16, examples=["2026-10"])] = None,
    employer: Annotated[str | None, Query(max_length=64, description="staff only")] = None,
    status: Annotated[str | None, Query(pattern="^(received|accepted|rejected)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Filtered by period, status and (staff) employer; at most `limit` items."""
    doc = await handlers.list_declarations(
        request.app.state.store, caller, period=period, employer_id=employer, status=status, limit=limit
    )
    return ORJSONResponse(doc)


@router.get(
    "/employers/{employer_id:path}/account",
    operation_id="getEmployerAccount",
    tags=["accounts"],
    response_model=Account,
    responses=READ_ERRORS,
    summary="What is due per period and fund: due dates, surcharges, corrections",
)
async def employer_account(employer_id: str, request: Request, caller: Caller) -> Response:
    """Per period: the declaration in force, the dues per fund, the due date, the surcharge and
    the corrections; an employer reads only its own account."""
    doc = await handlers.employer_account(request.app.state.store, caller, employer_id)
    return ORJSONResponse(doc)


# ---- Pensions: claims (back offices) and careers from before Kalo --------------------------


@router.post(
    "/pension-claims",
    operation_id="filePensionClaim",
    tags=["pensions"],
    status_code=202,
    response_model=ClaimReceipt,
    responses={**RECEIPT, **SUBMIT_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClaimIn"}}},
        }
    },
    summary="File a pension claim (back office)",
    description=(
        "RULES.md §5's claim without `career` (the liquidation reads the worker's career) and "
        "without `claim_id` (assigned here). A worker whose claim is received, liquidated, pending "
        "control or approved files again only as a revision (`replaces`)."
    ),
)
async def file_claim(request: Request, caller: Caller, idempotency_key: IdempotencyKey = None) -> Response:
    require(caller, "backoffice")
    body = await request.body()
    try:
        claim = ClaimIn.model_validate_json(body)
    except ValidationError as exc:
        raise problem_from_validation(exc, what="claim") from None
    receipt, created = await handlers.file_claim(
        request.app.state.store,
        caller,
        claim,
        payload_sha256=sha256_hex(body),
        idempotency_key=idempotency_key,
        now=datetime.now(UTC),
        topic=topic(handlers.CLAIMS, request.app.state.settings),
        audit_topic=topic("kalo.audit", request.app.state.settings),
    )
    return _receipt(request, receipt, created)


@router.get(
    "/pension-claims/{claim_id}",
    operation_id="getPensionClaim",
    tags=["pensions"],
    response_model=ClaimView,
    responses=READ_ERRORS,
    summary="A claim's status, liquidation, flags and every decision with who and when",
)
async def get_claim(claim_id: str, request: Request, caller: Caller) -> Response:
    """Back offices, auditors and controllers: the claim as filed, its state, the liquidation once
    computed, the control's flags and decisions."""
    return ORJSONResponse(await handlers.get_claim(request.app.state.store, caller, claim_id))


@router.get(
    "/pension-claims",
    operation_id="listPensionClaims",
    tags=["pensions"],
    response_model=ClaimList,
    responses=LIST_ERRORS,
    summary="Claims, newest first, by status and worker",
)
async def list_claims(
    request: Request,
    caller: Caller,
    status: Annotated[
        str | None, Query(pattern="^(received|liquidated|pending_control|approved|rejected)$")
    ] = None,
    worker: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Back offices, auditors and controllers; at most `limit` items."""
    doc = await handlers.list_claims(
        request.app.state.store, caller, status=status, worker_id=worker, limit=limit
    )
    return ORJSONResponse(doc)


@router.post(
    "/careers/import",
    operation_id="importCareers",
    tags=["careers"],
    status_code=202,
    response_model=CareerImportReceipt,
    responses={**RECEIPT, **SUBMIT_ERRORS},
    summary="Import careers from before Kalo (CSV file; back office)",
    description=(
        "multipart/form-data with `file`: UTF-8 CSV, comma or semicolon, a header row with "
        "worker_id, period, employer_id, base (any order). Each row replaces that worker's month "
        "with that employer in the careers (marked imported); the same file again changes nothing. "
        "The ledger applies the rows shortly after the receipt (`applied_workers` on GET)."
    ),
)
async def import_careers(
    request: Request,
    caller: Caller,
    file: Annotated[UploadFile, File(description="the CSV file")],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    require(caller, "backoffice")
    data = await file.read()
    async with request.app.state.career_imports:  # one file at a time: see app.py
        # Read in a thread: a million rows take seconds of CPU, during which the event loop
        # keeps answering the declarations (the GIL is handed over every few milliseconds).
        rows, _ = await asyncio.to_thread(parse_careers, data)
        receipt, created = await handlers.import_careers(
            request.app.state.store,
            caller,
            rows,
            payload_sha256=sha256_hex(data),
            idempotency_key=idempotency_key,
            now=datetime.now(UTC),
            topic=topic(handlers.CAREERS_IMPORTED, request.app.state.settings),
            audit_topic=topic("kalo.audit", request.app.state.settings),
        )
        del rows  # the receipt is written: the rows' memory goes before the next file's
    return _receipt(request, receipt, created)


@router.get(
    "/careers/imports/{import_id}",
    operation_id="getCareerImport",
    tags=["careers"],
    response_model=CareerImportReceipt,
    responses=READ_ERRORS,
    summary="A careers import: rows, workers, and how many workers the ledger has applied",
)
async def get_career_import(import_id: str, request: Request, caller: Caller) -> Response:
    """Back offices and auditors: the import's receipt and `applied_workers`, the workers the
    ledger has applied so far (all of them once it has caught up)."""
    return ORJSONResponse(await handlers.get_career_import(request.app.state.store, caller, import_id))
