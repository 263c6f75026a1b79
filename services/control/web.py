"""The controllers' page: server-rendered HTML (Jinja2), no JavaScript.

Sign-in with a controller's API key opens a session cookie (HttpOnly, SameSite=Strict; the
table keeps only the token's hash). Every form carries a CSRF token: the sign-in's is a
double-submit cookie, the others the signed-in session's own token. The page's routes only
decode the form, call the same handlers as the API and render.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from contracts.pensions import month_sources
from services.common.hashing import sha256_hex
from services.common.settings import Settings
from services.control import handlers
from services.control.adapters import WebSessions
from services.control.auth import SESSION_COOKIE, known_controller
from services.control.chart import career_svg, monthly_bases
from services.control.errors import RULE_STATUS, RULE_TEXT, Problem
from services.control.handlers import Controller, NotFound, Refused
from services.control.routes import record_decision
from services.rules import reference_window

CSRF_COOKIE = "kalo_control_csrf"
page_router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class SignedIn:
    controller: Controller
    csrf: str
    token_hash: str


class SignIns:
    def __init__(self, sessions: WebSessions, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock

    async def current(self, request: Request) -> SignedIn | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        token_hash = sha256_hex(token.encode())
        row = await self.sessions.find(token_hash, self.clock())
        if row is None:
            return None
        return SignedIn(Controller(row["controller"], row["controller_label"]), row["csrf_token"], token_hash)

    async def sign_in(self, controller: Controller) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + timedelta(hours=self.settings.control_signin_hours)
        csrf = secrets.token_urlsafe(24)
        await self.sessions.add(
            sha256_hex(token.encode()), controller.key_hash, controller.label, csrf, now, expires
        )
        return token

    async def sign_out(self, signed_in: SignedIn) -> None:
        await self.sessions.remove(signed_in.token_hash)

    def cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=self.settings.control_cookie_secure,
            path="/",
        )


def template_filters() -> dict[str, Callable[..., Any]]:
    def francs(n: object) -> str:
        return f"{n:,}".replace(",", "\u202f") + "\u00a0F" if isinstance(n, int) else "—"

    def when(iso: str | None) -> str:
        return "—" if not iso else iso.replace("T", " ")[:16] + " UTC"

    return {"francs": francs, "when": when}


def _render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    template = request.app.state.templates.get_template(name)
    return HTMLResponse(template.render(request=request, **context), status_code=code)


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


async def _signed_in(request: Request) -> SignedIn | None:
    signed_in: SignedIn | None = await request.app.state.signins.current(request)
    return signed_in


def _to_signin() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


# --- sign-in ---------------------------------------------------------------------------------


@page_router.get("/")
async def home(request: Request) -> Response:
    return RedirectResponse("/liquidations" if await _signed_in(request) else "/signin", status_code=303)


def _signin_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = _render(request, "signin.html", status, csrf=token, error=error, user=None)
    request.app.state.signins.cookie(response, CSRF_COOKIE, token)
    return response


@page_router.get("/signin")
async def signin_form(request: Request) -> Response:
    if await _signed_in(request):
        return RedirectResponse("/liquidations", status_code=303)
    return _signin_page(request)


@page_router.post("/signin")
async def signin(
    request: Request, key: Annotated[str, Form(max_length=200)] = "", csrf: Annotated[str, Form()] = ""
) -> Response:
    if not _same(csrf, request.cookies.get(CSRF_COOKIE)):
        return _signin_page(request, "The form expired; please sign in again.", 403)
    try:
        controller = await known_controller(request, key.strip()) if key.strip() else None
    except Problem as exc:
        return _signin_page(request, exc.detail, exc.status)
    if controller is None:
        return _signin_page(request, "This is not a controller's key.", 403)
    signins: SignIns = request.app.state.signins
    token = await signins.sign_in(controller)
    response = RedirectResponse("/liquidations", status_code=303)
    signins.cookie(response, SESSION_COOKIE, token, max_age=int(signins.settings.control_signin_hours * 3600))
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@page_router.post("/signout")
async def signout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    signed_in = await _signed_in(request)
    if signed_in is not None and _same(csrf, signed_in.csrf):
        await request.app.state.signins.sign_out(signed_in)
    response = _to_signin()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- liquidations ----------------------------------------------------------------------------

STATUS_TABS = (
    ("pending", "Pending"),
    ("escalated", "Escalated"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
)


@page_router.get("/liquidations")
async def liquidations_page(
    request: Request, status: Annotated[str, Query(max_length=20)] = "pending"
) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    if status not in handlers.STATUSES:
        status = "pending"
    state = request.app.state
    items = await handlers.list_liquidations(state.store, status=status, now=state.clock(), limit=500)
    return _render(
        request,
        "liquidations.html",
        user=signed_in,
        items=items,
        status=status,
        tabs=STATUS_TABS,
        session=await _open_session(request, signed_in),
    )


async def _open_session(request: Request, signed_in: SignedIn) -> dict[str, Any] | None:
    return await handlers.current_session(request.app.state.store, signed_in.controller)


def career_sources(doc: dict[str, Any]) -> dict[str, str] | None:
    """Period → assessed, imported or both, as the liquidation's snapshot says (None: a
    liquidation made before it said so, or runs that do not fit its career)."""
    runs = doc.get("career_sources")
    if runs is None:
        return None
    try:
        return month_sources(doc["career"], runs)
    except (ValueError, TypeError, IndexError):  # stored as received: the contract checked it
        return None


async def _detail_page(
    request: Request,
    signed_in: SignedIn,
    claim_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    done: str | None = None,
    reason: str = "",
) -> Response:
    state = request.app.state
    try:
        doc = await handlers.liquidation_detail(
            state.store, signed_in.controller, claim_id, now=state.clock()
        )
    except NotFound:
        return _render(request, "not_found.html", 404, user=signed_in, what=f"claim {claim_id}")
    mine = any(d["controller"] == signed_in.controller.key_id for d in doc["decisions"])
    window = reference_window(doc["claim"], [e[:2] for e in doc["career"]], state.ruleset)
    sources = career_sources(doc)
    chart = Markup(career_svg(doc["career"], sources=sources, window=window))  # every text escaped there
    return _render(
        request,
        "liquidation.html",
        status,
        user=signed_in,
        doc=doc,
        chart=chart,
        error=error,
        sources=sources,
        done=done,
        reason=reason,
        decided_by_me=mine,
        months=monthly_bases(doc["career"]),
        window=window,
        session=await _open_session(request, signed_in),
    )


@page_router.get("/liquidations/{claim_id}")
async def liquidation_page(request: Request, claim_id: str, done: str | None = None) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    return await _detail_page(request, signed_in, claim_id, done=done)


@page_router.post("/liquidations/{claim_id}/decide")
async def decide_form(
    request: Request,
    claim_id: str,
    decision: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    if not _same(csrf, signed_in.csrf):
        return await _detail_page(
            request, signed_in, claim_id, error="The form expired; try again.", status=403
        )
    try:
        await record_decision(request, signed_in.controller, claim_id, decision, reason or None)
    except Refused as exc:
        return await _detail_page(
            request,
            signed_in,
            claim_id,
            error=RULE_TEXT.get(exc.rule, exc.detail),
            status=RULE_STATUS.get(exc.rule, 409),
            reason=reason,
        )
    except NotFound:
        return _render(request, "not_found.html", 404, user=signed_in, what=f"claim {claim_id}")
    return RedirectResponse(f"/liquidations/{claim_id}?done={decision}", status_code=303)


# --- sessions and minutes --------------------------------------------------------------------


@page_router.get("/sessions")
async def sessions_page(request: Request, error: str | None = None) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    sessions = await handlers.list_sessions(request.app.state.store)
    return _render(
        request,
        "sessions.html",
        user=signed_in,
        sessions=sessions,
        error=error,
        session=await _open_session(request, signed_in),
    )


@page_router.post("/sessions/open")
async def open_session_form(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    if not _same(csrf, signed_in.csrf):
        return RedirectResponse("/sessions", status_code=303)
    state = request.app.state
    with contextlib.suppress(Refused):  # one open already: the list shows it
        await handlers.open_session(state.store, signed_in.controller, now=state.clock())
    return RedirectResponse("/liquidations", status_code=303)


@page_router.post("/sessions/{session_id}/close")
async def close_session_form(
    request: Request, session_id: uuid.UUID, csrf: Annotated[str, Form()] = ""
) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    if _same(csrf, signed_in.csrf):
        state = request.app.state
        with contextlib.suppress(Refused, NotFound):  # shown as it stands
            await handlers.close_session(state.store, signed_in.controller, session_id, now=state.clock())
    return RedirectResponse(f"/sessions/{session_id}", status_code=303)


@page_router.get("/sessions/{session_id}")
async def session_page(request: Request, session_id: uuid.UUID) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    try:
        doc = await handlers.session_minutes(request.app.state.store, session_id)
    except NotFound:
        return _render(request, "not_found.html", 404, user=signed_in, what=f"session {session_id}")
    return _render(
        request,
        "session.html",
        user=signed_in,
        doc=doc,
        session_id=str(session_id),
        session=await _open_session(request, signed_in),
    )
