"""Dead letters: a message that could not be processed, kept with its bytes and its error."""

from __future__ import annotations

import base64
import hashlib
import logging
import traceback
from collections.abc import Awaitable, Callable

from contracts.audit import DeadLetter, audit_event
from contracts.envelope import derived_id, wrap
from services.common.metrics import StreamMetrics

log = logging.getLogger(__name__)

# Bytes of the original value carried in the letter: a 32 MiB message's letter stays under
# Kafka's limit. Larger values are replayed from their source position.
MAX_INLINE_BYTES = 16 * 1024 * 1024


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
    # A letter must itself fit in a Kafka message (base64 adds a third): a huge value keeps
    # its beginning, its size and hash here, and stays whole at its source position.
    truncated = len(value) > MAX_INLINE_BYTES
    kept = value[:MAX_INLINE_BYTES] if truncated else value
    letter = DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key[:4096]).decode() if key is not None else None,
        value_b64=base64.b64encode(kept).decode(),
        error=detail[:4000],
        service=service,
        value_size=len(value),
        value_sha256=hashlib.sha256(value).hexdigest(),
        value_truncated=truncated,
    )
    event = wrap(
        letter,
        producer=service,
        correlation_id=position,
        event_id=derived_id(position, DeadLetter.TYPE),
    )
    return position, event.model_dump_json().encode()


async def park(
    send: Callable[[str, bytes], Awaitable[object]],
    *,
    service: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    error: BaseException,
    stream: StreamMetrics,
    send_audit: Callable[[str, bytes], Awaitable[object]] | None = None,
) -> None:
    """Dead-letter one message: log it, send the letter (`send(key, value)` to kalo.dlq, as
    the caller's runtime sends), record it (`send_audit(key, value)` to kalo.audit: action
    `dlq.parked`), count it in the service's `kalo_<service>_dlq_messages_total`. The one
    way every service parks a message."""
    log.warning("%s: %s/%s/%s to DLQ: %s", service, topic, partition, offset, error)
    letter_key, letter = dead_letter(
        service=service, topic=topic, partition=partition, offset=offset, key=key, value=value, error=error
    )
    await send(letter_key, letter)
    if send_audit is not None:
        await send_audit(letter_key, parked_audit(service, letter_key, value, letter, error))
    stream.dlq.labels(topic).inc()


def parked_audit(service: str, position: str, value: bytes, letter: bytes, error: BaseException) -> bytes:
    """The audit event of a parking: the original's and the letter's SHA-256, the error."""
    _, event = audit_event(
        action="dlq.parked",
        subject=position,
        actor=service,
        input_bytes=value,
        output_bytes=letter,
        producer=service,
        event_id=derived_id(position, "dlq.parked"),
        details={"error": f"{type(error).__name__}: {error}"[:500]},
    )
    return event
