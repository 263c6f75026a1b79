"""HTTP routes for employers: thin — decode, call a handler, answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.common.hashing import sha256_hex
from services.gateway import handlers
from services.gateway.auth import authenticate
from services.gateway.errors import Problem
from services.gateway.registry import Principal
from services.gateway.report import business_report
from services.gateway.schemas import DeclarationIn, Receipt
from services.gateway.validation import problem_from_validation

router = APIRouter(prefix="/v1")
Caller = Annotated[Principal, Depends(authenticate)]


async def read_body(request: Request) -> bytes:
    limit = request.app.state.settings.gateway_max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "Payload too large", f"the body exceeds {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise Problem(413, "Payload too large", f"the body exceeds {limit} bytes")
    return body


@router.post(
    "/declarations",
    status_code=202,
    response_model=Receipt,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": DeclarationIn.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    )
                }
            },
        }
    },
    summary="Submit a monthly declaration (JSON)",
)
async def submit_json(
    request: Request,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    body = await read_body(request)
    try:
        decl = DeclarationIn.model_validate_json(body)
    except ValidationError as exc:
        raise problem_from_validation(exc) from None
    return await _submit(request, caller, decl, sha256_hex(body), idempotency_key)


async def _submit(
    request: Request, caller: Principal, decl: DeclarationIn, sha: str, idempotency_key: str | None
) -> JSONResponse:
    async with request.app.state.pool.acquire() as conn:
        receipt, created = await handlers.submit_declaration(
            conn,
            caller,
            decl,
            payload_sha256=sha,
            idempotency_key=idempotency_key,
            now=datetime.now(UTC),
        )
    if created:
        request.app.state.relay.wake()
    return JSONResponse(receipt.model_dump(), status_code=202 if created else 200)


@router.get("/declarations/{declaration_id}", summary="Status and business report")
async def get_declaration(declaration_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    row = dict(await handlers.get_declaration(request.app.state.pool, caller, declaration_id))
    receipt = handlers.receipt_of(row).model_dump()
    receipt["superseded_by"] = row["superseded_by"]
    receipt["assessed_at"] = row["assessed_at"].isoformat() if row["assessed_at"] else None
    receipt["totals"] = row["totals"]
    receipt["report"] = business_report(row)
    return receipt
