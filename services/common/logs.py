"""One logging setup for every Kalo process: structlog renders every line, the services' own
and those of faust, aiokafka, uvicorn and asyncpg (stdlib logging routed through it).

JSON lines when stderr is not a terminal (containers, files, log shippers), readable text on a
terminal; KALO_LOG_FORMAT=json|text forces one, KALO_LOG_LEVEL sets the level. The ids of the
event being handled (bound with `handling`) are on every line logged meanwhile. Values that
look like secrets (API keys, passwords, DSN credentials, bearer tokens) never reach a line.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from typing import Any, Literal, Protocol, TextIO

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, merge_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

from contracts.envelope import Envelope, uuid_text

Format = Literal["json", "text"]
REDACTED = "[redacted]"
# Field names whose value is a secret, whatever it holds.
_SECRET_FIELD = re.compile(r"(?i)password|passwd|secret|token|api_?key|authorization|private_key|signing_key")
# Secrets inside free text: Kalo's API keys, bearer tokens, credentials in a URL.
_SECRET_TEXT = (
    (re.compile(r"\b(kalo_[a-z]{2,5})_[A-Za-z0-9_-]{16,}"), rf"\1_{REDACTED}"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s'\"]+):[^@\s'\"]*@"), rf"\1:{REDACTED}@"),
)
# The libraries whose loggers install handlers of their own; theirs go, ours render them.
LIBRARY_LOGGERS = (
    "faust",
    "mode",
    "aiokafka",
    "asyncpg",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "aiohttp",
    "aiohttp.access",
)


def scrub(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Secrets out of every field: by the field's name, and by their look inside text."""
    for name, value in list(event.items()):
        if _SECRET_FIELD.search(name) and value is not None:
            event[name] = REDACTED
        elif isinstance(value, str):
            event[name] = scrub(value)
    return event


def _exception_text(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Tracebacks as text, scrubbed like every other value (an exception may quote a DSN)."""
    event = structlog.processors.format_exc_info(_logger, _method, event)
    if isinstance(event.get("exception"), str):
        event["exception"] = scrub(event["exception"])
    return event


def _drop_colour(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """uvicorn's copy of each message with terminal colours: the message is already there."""
    event.pop("color_message", None)
    return event


def _shared(service: str | None) -> list[Processor]:
    def add_service(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        if service:
            event.setdefault("service", service)
        return event

    return [
        merge_contextvars,
        merge_handling,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
    ]


def formatter(fmt: Format = "json", service: str | None = None) -> logging.Formatter:
    """The formatter every handler uses (also what a dictConfig names: uvicorn's worker
    processes build their logging from one). Configures structlog's own loggers too."""
    shared = _shared(service)
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_colour],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _exception_text,
            redact,
            renderer,
        ],
        pass_foreign_args=False,
    )


def chosen_format(setting: str, stream: TextIO) -> Format:
    """`auto`: JSON unless the stream is a terminal."""
    setting = setting.lower()
    if setting in ("json", "text"):
        return setting  # type: ignore[return-value]
    if setting != "auto":
        raise ValueError(f"KALO_LOG_FORMAT must be auto, json or text, not {setting!r}")
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def dict_config(
    *, fmt: Format, level: str = "INFO", service: str | None = None, stream: str = "ext://sys.stderr"
) -> dict[str, Any]:
    """The logging configuration as `logging.config.dictConfig` reads it (uvicorn and faust
    take it as theirs): one handler on the root, every library logger propagating to it."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"kalo": {"()": f"{__name__}.formatter", "fmt": fmt, "service": service}},
        "handlers": {"kalo": {"class": "logging.StreamHandler", "formatter": "kalo", "stream": stream}},
        "root": {"level": level, "handlers": ["kalo"]},
        "loggers": {name: {"handlers": [], "propagate": True} for name in LIBRARY_LOGGERS},
    }


class LogSettings(Protocol):
    log_format: str
    log_level: str


def logging_config(service: str | None, settings: LogSettings) -> dict[str, Any]:
    """The configuration KALO_LOG_FORMAT and KALO_LOG_LEVEL ask for (uvicorn and faust apply
    it as theirs: each would otherwise install its own handlers)."""
    fmt = chosen_format(settings.log_format, sys.stderr)
    return dict_config(fmt=fmt, level=settings.log_level, service=service)


def configure_logging(service: str | None, settings: LogSettings) -> dict[str, Any]:
    """Set up logging for this process; returns the configuration applied."""
    config = logging_config(service, settings)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
    return config


def is_json(config: MutableMapping[str, Any]) -> bool:
    return bool(config["formatters"]["kalo"]["fmt"] == "json")


def ids_of(event: Any) -> dict[str, str]:
    """The correlation id (declaration, claim) and causation id (the event's own id) of an
    envelope, or of an item holding one as `.envelope`; nothing for anything else."""
    # An envelope itself first: a missing attribute of a pydantic model raises inside
    # getattr, which cost more than the rest of this function (once per event handled).
    envelope = event if isinstance(event, Envelope) else getattr(event, "envelope", event)
    ids: dict[str, str] = {}
    correlation = getattr(envelope, "correlation_id", None)
    event_id = getattr(envelope, "id", None)
    if correlation is not None:
        ids["correlation_id"] = str(correlation)
    if event_id is not None:
        ids["causation_id"] = uuid_text(event_id)  # remembered: its outputs' ids use it too
    return ids


# The event being handled, and any ids given with it: (outer entry, event, ids), read only
# when a line is logged. Binding the ids as structlog context variables cost 5-6 µs per event
# handled (formatting them, two variables set and reset), a line or not.
_HANDLING: ContextVar[tuple[Any, Any, dict[str, Any]] | None] = ContextVar("kalo_handling", default=None)


class handling:  # lower case: used as a function, `with handling(event):`
    """While an event is handled: its ids (and any given) on every line logged."""

    __slots__ = ("entry", "token")

    def __init__(self, event: Any = None, **ids: Any) -> None:
        self.entry = (_HANDLING.get(), event, ids)
        self.token: Token[Any] | None = None

    def __enter__(self) -> None:
        self.token = _HANDLING.set(self.entry)

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _HANDLING.reset(self.token)


def merge_handling(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """The ids of the events being handled (the innermost wins), under what the line gives."""
    entry = _HANDLING.get()
    if entry is None:
        return event
    chain = []
    while entry is not None:
        chain.append(entry)
        entry = entry[0]
    ids: dict[str, Any] = {}
    for _, handled, given in reversed(chain):
        ids.update(ids_of(handled))
        ids.update((k, v) for k, v in given.items() if v is not None)
    for key, value in ids.items():
        event.setdefault(key, value)
    return event


def bind(**ids: Any) -> None:
    """Ids on every later line of this task (a request, once its declaration id is known)."""
    bind_contextvars(**{k: str(v) for k, v in ids.items() if v is not None})


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIds:
    """ASGI middleware: each HTTP request's lines carry its request id (the client's
    X-Request-ID when it is a plain token, else a new one)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        with bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send)
