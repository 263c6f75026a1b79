"""The control commission's API: thin — decode, call a handler, answer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.control import handlers
from services.control.auth import controller_from_key, controller_or_cookie
from services.control.errors import ORJSONResponse, Problem, refused
from services.control.handlers import Controller, NotFound, Refused
from services.control.pdf import minutes_pdf

router = APIRouter(prefix="/v1")
Caller = Annotated[Controller, Depends(controller_from_key)]
Reader = Annotated[Controller, Depends(controller_or_cookie)]


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


@router.get("/liquidations", summary="Liquidations, escalated first")
async def list_liquidations(
    request: Request,
    caller: Caller,
    status: Annotated[str | None, Query(description=" | ".join(handlers.STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> ORJSONResponse:
    try:
        items = await handlers.list_liquidations(
            request.app.state.store, status=status, now=_now(request), limit=limit
        )
    except Refused as exc:
        raise answer_refusal(exc) from None
    return ORJSONResponse({"liquidations": items, "count": len(items)})


@router.get("/liquidations/{claim_id}", summary="A liquidation, its re-computation, flags and decisions")
async def get_liquidation(request: Request, caller: Caller, claim_id: str) -> ORJSONResponse:
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
    status_code=201,
    summary="Approve or reject a liquidation (four eyes: two controllers for a flagged one)",
)
async def post_decision(request: Request, caller: Caller, claim_id: str, body: DecisionIn) -> ORJSONResponse:
    try:
        decided = await record_decision(request, caller, claim_id, body.decision, body.reason)
    except (Refused, NotFound) as exc:
        raise answer_refusal(exc) from None
    doc = {"claim_id": decided.claim_id, "status": decided.status, "decisions": decided.decisions}
    return ORJSONResponse(doc, status_code=201)


@router.get("/sessions", summary="Control sessions, open ones first")
async def list_sessions(request: Request, caller: Reader) -> ORJSONResponse:
    return ORJSONResponse({"sessions": await handlers.list_sessions(request.app.state.store)})


@router.post("/sessions", status_code=201, summary="Open a control session")
async def open_session(request: Request, caller: Caller) -> ORJSONResponse:
    try:
        doc = await handlers.open_session(request.app.state.store, caller, now=_now(request))
    except Refused as exc:
        raise answer_refusal(exc) from None
    return ORJSONResponse(doc, status_code=201)


@router.post("/sessions/{session_id}/close", summary="Close a session: its minutes are sealed")
async def close_session(request: Request, caller: Caller, session_id: uuid.UUID) -> ORJSONResponse:
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


@router.get("/sessions/{session_id}/minutes", summary="The minutes as JSON, with their seal")
async def minutes_json(request: Request, caller: Reader, session_id: uuid.UUID) -> ORJSONResponse:
    return ORJSONResponse(await _minutes(request, session_id))


@router.get("/sessions/{session_id}/minutes.html", summary="The minutes as HTML", response_class=HTMLResponse)
async def minutes_html(request: Request, caller: Reader, session_id: uuid.UUID) -> HTMLResponse:
    doc = await _minutes(request, session_id)
    page = request.app.state.templates.get_template("minutes.html").render(doc=doc, standalone=True)
    return HTMLResponse(page)


@router.get("/sessions/{session_id}/minutes.pdf", summary="The minutes as PDF")
async def minutes_pdf_route(request: Request, caller: Reader, session_id: uuid.UUID) -> Response:
    doc = await _minutes(request, session_id)
    name = f"minutes-{session_id}.pdf"
    return Response(
        minutes_pdf(doc),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
