"""Assessment wiring: the faust app, its topics and its /metrics page."""

from __future__ import annotations

from pathlib import Path

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.kafka import topic
from services.common.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> faust.App:
    s = settings or get_settings()
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{s.topic_prefix}kalo-assessment",
        broker=f"kafka://{s.bootstrap}",
        web_host=s.metrics_host,
        web_port=s.assessment_web_port,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=s.partitions,
        producer_acks=-1,
        producer_max_request_size=s.max_message_bytes,
        consumer_max_fetch_size=s.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=500,
        broker_session_timeout=s.kafka_session_timeout_s,
        broker_heartbeat_interval=max(1.0, s.kafka_session_timeout_s / 4),
        broker_rebalance_timeout=max(20.0, s.kafka_session_timeout_s * 2),
        stream_buffer_maxsize=2000,
        topic_allow_declare=False,
        datadir=f"{s.data_dir}/{s.topic_prefix}assessment",
    )

    @app.page("/metrics")
    async def metrics(web, request):  # type: ignore[no-untyped-def]
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.conf.kalo_settings = s  # type: ignore[attr-defined]
    return app


def submitted_topic(app: faust.App, s: Settings) -> faust.TopicT:
    return app.topic(topic("kalo.declarations.submitted", s), internal=False)
