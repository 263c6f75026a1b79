"""Log lines: JSON off a terminal with the ids of the event being handled, text on one, and
never a key or a password."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from contracts.declarations import WorkerPreRegistered
from contracts.envelope import Envelope, wrap
from services.common import logs
from services.common.settings import Settings

pytestmark = pytest.mark.unit

KEY = "kalo_emp_" + "Zx9" * 15  # the shape of an API key from `kalo employers add`


def event(declaration_id: str) -> Envelope[WorkerPreRegistered]:
    data = WorkerPreRegistered(
        declaration_id=declaration_id, employer_id="E1", period="2026-10", worker_ids=["W1"]
    )
    return wrap(data, producer="assessment", correlation_id=declaration_id, causation_id=uuid.uuid4())


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing through Kalo's JSON formatter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json", service="assessment"))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_stdlib_line_is_one_json_object_with_level_logger_time_and_service(captured: io.StringIO) -> None:
    logging.getLogger("aiokafka.consumer").warning("heartbeat failed for group %s", "kalo-ledger")
    [line] = lines(captured)
    assert line["event"] == "heartbeat failed for group kalo-ledger"
    assert line["level"] == "warning"
    assert line["logger"] == "aiokafka.consumer"
    assert line["service"] == "assessment"
    assert datetime.fromisoformat(str(line["timestamp"])).tzinfo is not None


def test_uvicorns_coloured_copy_of_a_message_is_left_out(captured: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]",
        7,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"},
    )
    [line] = lines(captured)
    assert line["event"] == "Started server process [7]" and "color_message" not in line


def test_lines_logged_while_an_event_is_handled_carry_its_correlation_and_causation_ids(
    captured: io.StringIO,
) -> None:
    handled = event("D-2026-11-0001")
    log = logging.getLogger("services.assessment.handlers")
    with logs.handling(handled):
        log.warning("assessment failed")
    log.warning("between batches")
    inside, outside = lines(captured)
    assert inside["correlation_id"] == "D-2026-11-0001"
    assert inside["causation_id"] == str(handled.id)
    assert "correlation_id" not in outside and "causation_id" not in outside


def test_an_item_holding_an_envelope_gives_its_ids_and_anything_else_none() -> None:
    held = event("C-1")

    class Decoded:
        envelope = held

    assert logs.ids_of(Decoded()) == {"correlation_id": "C-1", "causation_id": str(held.id)}
    assert logs.ids_of(b"not an event") == {}


def test_keys_passwords_and_tokens_never_reach_a_line(captured: io.StringIO) -> None:
    log = logging.getLogger("services.gateway")
    log.warning("rejected %s", KEY)
    log.warning("connecting to postgresql://kalo_ledger:s3cret-pw@db:5432/kalo")
    log.warning("header Authorization: Bearer abcdefgh12345678")
    log.warning("with fields", extra={"api_key": KEY, "password": "hunter22", "employer_id": "E1"})
    try:
        raise ConnectionError(f"could not connect to postgresql://kalo:adm1n-pw@db/kalo with {KEY}")
    except ConnectionError:
        log.exception("outage")
    text = captured.getvalue()
    for secret in (KEY, "s3cret-pw", "abcdefgh12345678", "hunter22", "adm1n-pw"):
        assert secret not in text
    parsed = lines(captured)
    assert parsed[0]["event"] == "rejected kalo_emp_[redacted]"
    assert parsed[1]["event"] == "connecting to postgresql://kalo_ledger:[redacted]@db:5432/kalo"
    assert parsed[3]["api_key"] == "[redacted]" and parsed[3]["employer_id"] == "E1"
    assert "ConnectionError" in str(parsed[4]["exception"])


def test_a_traceback_on_a_terminal_is_scrubbed_too() -> None:
    try:
        raise ConnectionError("could not connect to postgresql://kalo:adm1n-pw@db/kalo")
    except ConnectionError:
        record = logging.LogRecord(
            "services.ledger", logging.ERROR, __file__, 1, "outage", (), sys.exc_info()
        )
    text = logs.formatter("text").format(record)
    assert "ConnectionError" in text and "adm1n-pw" not in text


def test_auto_is_json_when_piped_and_text_on_a_terminal() -> None:
    assert logs.chosen_format("auto", io.StringIO()) == "json"
    assert logs.chosen_format("auto", Tty()) == "text"
    assert logs.chosen_format("json", Tty()) == "json"
    assert logs.chosen_format("text", io.StringIO()) == "text"


def test_text_lines_are_readable_and_carry_the_ids() -> None:
    record = logging.LogRecord("services.ledger", logging.INFO, __file__, 1, "applied %d", (3,), None)
    with logs.handling(correlation_id="D-9"):
        text = logs.formatter("text").format(record)
    assert "applied 3" in text and "correlation_id=D-9" in text
    assert not text.lstrip().startswith("{")


def test_the_settings_accept_a_format_and_level_in_any_case_and_refuse_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KALO_LOG_FORMAT", "JSON")
    monkeypatch.setenv("KALO_LOG_LEVEL", "debug")
    s = Settings()
    assert (s.log_format, s.log_level) == ("json", "DEBUG")
    config = logs.logging_config("ledger", s)
    assert logs.is_json(config) and config["root"]["level"] == "DEBUG"
    monkeypatch.setenv("KALO_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()


def test_library_loggers_lose_their_own_handlers_and_propagate_to_kalos() -> None:
    config = logs.dict_config(fmt="json")
    for name in ("faust", "aiokafka", "asyncpg", "uvicorn", "uvicorn.error"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True}
    assert config["root"]["handlers"] == ["kalo"]


def test_every_request_gets_a_request_id_on_its_lines(captured: io.StringIO) -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        logging.getLogger("services.gateway.routes").warning("handled")
        return PlainTextResponse("ok")

    app = logs.RequestIds(Starlette(routes=[Route("/", endpoint)]))
    with TestClient(app) as client:
        client.get("/", headers={"X-Request-ID": "req-42"})
        client.get("/", headers={"X-Request-ID": "not a token!"})
    given, made = [line for line in lines(captured) if line["logger"] == "services.gateway.routes"]
    assert given["request_id"] == "req-42"
    assert uuid.UUID(str(made["request_id"])).hex == made["request_id"]
