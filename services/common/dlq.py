"""Dead letters: a message that could not be processed, kept with its bytes and its error."""

from __future__ import annotations

import base64
import traceback

from contracts.audit import DeadLetter
from contracts.envelope import derived_id, wrap


def dead_letter(
    *,
    service: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    error: BaseException,
) -> tuple[str, bytes]:
    """The (key, value) to send to kalo.dlq; the id is stable for one source position."""
    detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    position = f"{topic}/{partition}/{offset}"
    letter = DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        value_b64=base64.b64encode(value).decode(),
        error=detail[:4000],
        service=service,
    )
    event = wrap(
        letter,
        producer=service,
        correlation_id=position,
        event_id=derived_id(position, DeadLetter.TYPE),
    )
    return position, event.model_dump_json().encode()
