"""The control commission's API: thin — decode, call a handler, answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.control import handlers
from services.control.auth import API_KEY, SIGNED_IN, controller_from_key, controller_or_cookie
from services.control.errors import ORJSONResponse, Problem, refused
from services.control.handlers import Controller, NotFound, Refused
from services.control.pdf import minutes_pdf

router = APIRouter(prefix="/v1")
Caller = Annotated[Controller, Depends(controller_from_key)]
Reader = Annotated[Controller, Depends(controller_or_cookie)]
# What each caller sends: the key (Caller), the key or the page's sign-in (Reader).
KEY = [Security(API_KEY)]
KEY_OR_SIGN_IN = [Security(API_KEY), Security(SIGNED_IN)]

# When each problem happens (every one is application/problem+json, services.common.openapi).
PROBLEMS: dict[int, str] = {
    401: "No API key (nor sign-in, where it is accepted)",
    403: "Not a controller's key, or a four-eyes rule (`rule`): the filer may not decide, only "
    "the opener closes a session",
    404: "No such liquidation or session",
    409: "A four-eyes rule (`rule`): the same controller twice, a liquidation already decided, a "
    "session already open or sealed, a decision outside one's open session",
    422: "Invalid request: `errors` names every bad field (or `rule`: a rejection without a reason)",
    429: "Too many failed authentications from this address: retry after `Retry-After` seconds",
    503: "PostgreSQL is away for a moment: send the same request again after `Retry-After` seconds",
}


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    # Any route: a bad or no key (401, 403, 429), a value PostgreSQL refuses (422), an outage (503).
    every = (401, 403, 422, 429, 503)
    return {code: {"description": PROBLEMS[code]} for code in sorted({*every, *codes})}


def _json(description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}
    }


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    # Free text (newlines allowed), but no NUL: PostgreSQL text cannot hold one.
    reason: str | None = Field(
        default=None, max_length=4000, pattern=r"^[^\x00]*$", description="required for a rejection"
    )


def answer_refusal(exc: Refused | NotFound) -> Problem:
    if isinstance(exc, NotFound):
        return Problem(404, "Not found", str(exc))
    return refused(exc.rule, exc.detail)


def _now(request: Request) -> Any:
    return request.app.state.clock()


@router.get(
    "/liquidations",
    operation_id="listLiquidations",
    tags=["liquidations"],
    dependencies=KEY,
    responses={**_json("`liquidations` and their `count`"), **_problems()},
    summary="Liquidations, escalated first",
)
async def list_liquidations(
    request: Request,
    caller: Caller,
    status: Annotated[str | None, Query(description=" | ".join(handlers.STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ORJSONResponse:
    """Escalated first, then the oldest pending; each with its flags (`ESCALATED` first when it
    applies), amounts, approvals needed and dates; `status` filters."""
    try:
        items = await handlers.list_liquidations(
            request.app.state.store, status=status, now=_now(request), limit=limit
        )
    except Refused as exc:
        raise answer_refusal(exc) from None
    return ORJSONResponse({"liquidations": items, "count": len(items)})


@router.get(
    "/liquidations/{claim_id}",
    operation_id="getLiquidation",
    tags=["liquidations"],
    dependencies=KEY,
    responses={**_json("The liquidation"), **_problems(404)},
    summary="A liquidation, its re-computation, flags and decisions",
)
async def get_liquidation(request: Request, caller: Caller, claim_id: str) -> ORJSONResponse:
    """The claim, the career snapshot (with `career_sources`, where each month comes from, and
    `career_as_of`, the point it was read at, when the liquidation says them), the
    liquidation, the control's re-computation with a field-by-field comparison, the flags and
    every decision (who, when, why)."""
    try:
        doc = await handlers.liquidation_detail(request.app.state.store, caller, claim_id, now=_now(request))
    except (Refused, NotFound) as exc:
        raise answer_refusal(exc) from None
    return ORJSONResponse(doc)


async def record_decision(
    request: Request, caller: Controller, claim_id: str, decision: str, reason: str | None
) -> handlers.Decided:
    """Shared by the API and the page: the decision, its metrics, the relay woken."""
    state = request.app.state
    try:
        decided = await handlers.decide(
            state.store, caller, claim_id, decision=decision, reason=reason, now=_now(request)
        )
    except Refused as exc:
        state.on_refused(exc.rule)
        raise
    state.on_decided(decision)
    state.relay.wake()
    return decided


@router.post(
    "/liquidations/{claim_id}/decisions",
    operation_id="decideLiquidation",
    tags=["liquidations"],
    dependencies=KEY,
    responses={
        201: {
            "description": "Decided: the liquidation's `status` and its `decisions`",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **_problems(404, 409),
    },
    status_code=201,
    summary="Approve or reject a liquidation (four eyes: two controllers for a flagged one)",
)
async def post_decision(request: Request, caller: Caller, claim_id: str, body: DecisionIn) -> ORJSONResponse:
    """`{"decision": "approve" | "reject", "reason": "…"}` (a rejection needs a reason); 201 with
    the new status. A flagged liquidation needs two controllers; the key that filed the claim may
    not decide on it."""
    try:
        decided = await record_decision(request, caller, claim_id, body.decision, body.reason)
    except (Refused, NotFound) as exc:
        raise answer_refusal(exc) from None
    doc = {"claim_id": decided.claim_id, "status": decided.status, "decisions": decided.decisions}
    return ORJSONResponse(doc, status_code=201)


@router.get(
    "/sessions",
    operation_id="listSessions",
    tags=["sessions"],
    dependencies=KEY_OR_SIGN_IN,
    responses={**_json("`sessions`"), **_problems()},
    summary="Control sessions, open ones first",
)
async def list_sessions(request: Request, caller: Reader) -> ORJSONResponse:
    """Every control session, open ones first."""
    return ORJSONResponse({"sessions": await handlers.list_sessions(request.app.state.store)})


@router.post(
    "/sessions",
    operation_id="openSession",
    tags=["sessions"],
    dependencies=KEY,
    status_code=201,
    responses={
        201: {
            "description": "The session opened",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **_problems(409),
    },
    summary="Open a control session",
)
async def open_session(request: Request, caller: Caller) -> ORJSONResponse:
    """One open session per controller (409 for a second)."""
    try:
        doc = await handlers.open_session(request.app.state.store, caller, now=_now(request))
    except Refused as exc:
        raise answer_refusal(exc) from None
    return ORJSONResponse(doc, status_code=201)


@router.post(
    "/sessions/{session_id}/close",
    operation_id="closeSession",
    tags=["sessions"],
    dependencies=KEY,
    responses={**_json("The session closed, its minutes sealed"), **_problems(404, 409)},
    summary="Close a session: its minutes are sealed",
)
async def close_session(request: Request, caller: Caller, session_id: uuid.UUID) -> ORJSONResponse:
    """Only the controller who opened it closes a session; its minutes are then sealed."""
    try:
        doc = await handlers.close_session(request.app.state.store, caller, session_id, now=_now(request))
    except (Refused, NotFound) as exc:
        raise answer_refusal(exc) from None
    return ORJSONResponse(doc)


async def _minutes(request: Request, session_id: uuid.UUID) -> dict[str, Any]:
    try:
        return await handlers.session_minutes(request.app.state.store, session_id)
    except NotFound as exc:
        raise answer_refusal(exc) from None


@router.get(
    "/sessions/{session_id}/minutes",
    operation_id="getSessionMinutes",
    tags=["sessions"],
    dependencies=KEY_OR_SIGN_IN,
    responses={**_json("The minutes, with their seal"), **_problems(404)},
    summary="The minutes as JSON, with their seal",
)
async def minutes_json(request: Request, caller: Reader, session_id: uuid.UUID) -> ORJSONResponse:
    """The session's decisions and their seal (a signed audit-log head)."""
    return ORJSONResponse(await _minutes(request, session_id))


@router.get(
    "/sessions/{session_id}/minutes.html",
    operation_id="getSessionMinutesHtml",
    tags=["sessions"],
    dependencies=KEY_OR_SIGN_IN,
    response_class=HTMLResponse,
    responses={
        200: {
            "description": "The minutes as a page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **_problems(404),
    },
    summary="The minutes as HTML",
)
async def minutes_html(request: Request, caller: Reader, session_id: uuid.UUID) -> HTMLResponse:
    """The minutes as a standalone HTML page."""
    doc = await _minutes(request, session_id)
    page = request.app.state.templates.get_template("minutes.html").render(doc=doc, standalone=True)
    return HTMLResponse(page)


@router.get(
    "/sessions/{session_id}/minutes.pdf",
    operation_id="getSessionMinutesPdf",
    tags=["sessions"],
    dependencies=KEY_OR_SIGN_IN,
    response_class=Response,
    responses={
        200: {
            "description": "The minutes as a PDF file",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        },
        **_problems(404),
    },
    summary="The minutes as PDF",
)
async def minutes_pdf_route(request: Request, caller: Reader, session_id: uuid.UUID) -> Response:
    """The minutes as a PDF file."""
    doc = await _minutes(request, session_id)
    name = f"minutes-{session_id}.pdf"
    return Response(
        minutes_pdf(doc),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
