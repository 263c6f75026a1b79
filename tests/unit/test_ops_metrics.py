"""The operations side without a stack: the per-service metric factories, the lag without
internal topics, the HTTP metrics' labels, /ready's logic and the operations port, the audit
chain gauge's check."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.common.http_metrics import HttpMetricsMiddleware, http_metrics
from services.common.metrics import internal_topic, observe_lag, stream_metrics
from services.common.ops_http import start_ops_server
from services.common.ready import NotReady, Readiness, assigned_check, pool_check
from services.control.audit.chain import ChainCheck
from services.control.audit.merkle import leaf_hash, root


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def families(prefix: str) -> set[str]:
    return {f.name for f in REGISTRY.collect() if f.name.startswith(prefix)}


def test_the_factory_names_every_family_after_its_service_once() -> None:
    stream = stream_metrics("unitfactory", end_to_end="receipt → here")
    assert stream_metrics("unitfactory") is stream  # an app built twice registers nothing twice
    assert families("kalo_unitfactory_") == {
        "kalo_unitfactory_consumer_lag",
        "kalo_unitfactory_dlq_messages",  # the client drops _total from a counter's family name
        "kalo_unitfactory_batch_seconds",
        "kalo_unitfactory_end_to_end_seconds",
    }
    stream.dlq.labels("t").inc()
    assert sample("kalo_unitfactory_dlq_messages_total", {"topic": "t"}) == 1
    stream_metrics("unitnoe2e")
    assert "kalo_unitnoe2e_end_to_end_seconds" not in families("kalo_unitnoe2e_")


@pytest.mark.parametrize(
    ("name", "internal"),
    [
        ("__consumer_offsets", True),
        ("sbx.kalo-assessment-__assignor-__leader", True),
        ("kalo-assessment-totals-changelog", True),
        ("kalo.declarations.submitted", False),
        ("sbx.kalo.dlq", False),
    ],
)
def test_internal_topics_are_told_from_the_services_topics(name: str, internal: bool) -> None:
    assert internal_topic(name) is internal


@dataclass
class FakeConsumer:
    ends: dict[TopicPartition, int]
    positions: dict[TopicPartition, int]

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def highwater(self, tp: TopicPartition) -> int:
        return self.ends[tp]

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


async def test_the_lag_leaves_out_faust_s_leader_topic() -> None:
    stream = stream_metrics("unitlag")
    work, leader = TopicPartition("kalo.x", 3), TopicPartition("app-__assignor-__leader", 0)
    await observe_lag(stream, FakeConsumer({work: 10, leader: 5}, {work: 4, leader: 0}))
    assert sample("kalo_unitlag_consumer_lag", {"topic": "kalo.x", "partition": "3"}) == 6
    topics = {
        s.labels["topic"]
        for f in REGISTRY.collect()
        if f.name == "kalo_unitlag_consumer_lag"
        for s in f.samples
    }
    assert topics == {"kalo.x"}


class RevokingConsumer(FakeConsumer):
    """aiokafka's consumer during a rebalance: the first position read revokes every other
    partition, whose highwater then asserts as aiokafka's does."""

    async def position(self, tp: TopicPartition) -> int:
        self.ends = {tp: self.ends[tp]}
        return self.positions[tp]

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.ends, "Partition is not assigned"
        return self.ends[tp]


async def test_a_rebalance_while_the_lag_is_read_skips_the_revoked_partitions() -> None:
    stream = stream_metrics("unitrevoked")
    parts = {TopicPartition("kalo.y", p): 10 + p for p in range(4)}
    await observe_lag(stream, RevokingConsumer(dict(parts), dict.fromkeys(parts, 1)))
    read = [s for f in REGISTRY.collect() if f.name == "kalo_unitrevoked_consumer_lag" for s in f.samples]
    assert len(read) == 1  # the partition still assigned; the others wait for the next call


async def test_http_metrics_label_the_route_template_the_method_and_the_status() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        if item_id == "boom":
            raise RuntimeError("a bug")
        return {"id": item_id}

    app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics("unithttp"), routes=app.router.routes)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for i in range(3):
            assert (await c.get(f"/items/{i}")).status_code == 200
        assert (await c.get("/no/such/path/1")).status_code == 404
        assert (await c.get("/no/such/path/2")).status_code == 404
        assert (await c.post("/items/1")).status_code == 405
        assert (await c.get("/items/boom")).status_code == 500
    counted = {
        (s.labels["method"], s.labels["handler"], s.labels["status"]): s.value
        for f in REGISTRY.collect()
        if f.name == "kalo_unithttp_http_requests"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert counted == {
        ("GET", "/items/{item_id}", "200"): 3,
        ("GET", "unmatched", "404"): 2,  # one series whatever the unknown path
        ("POST", "/items/{item_id}", "405"): 1,
        ("GET", "/items/{item_id}", "500"): 1,
    }
    assert (
        sample(
            "kalo_unithttp_http_request_duration_seconds_count",
            {"method": "GET", "handler": "/items/{item_id}"},
        )
        == 4
    )


async def ok() -> None:
    return None


async def stalled() -> None:
    await asyncio.sleep(60)


async def refused() -> None:
    raise ConnectionRefusedError("connection refused")


async def test_ready_names_what_is_not_ready_and_never_waits_past_its_timeout() -> None:
    assert await Readiness({"postgres": ok, "kafka": ok}).report() == (
        200,
        {"status": "ready", "checks": {"postgres": "ok", "kafka": "ok"}},
    )
    started = time.monotonic()
    status, body = await Readiness({"postgres": stalled, "kafka": refused, "x": ok}, timeout=0.2).report()
    assert time.monotonic() - started < 5  # bounded by the timeout, not the stalled check
    assert status == 503 and body["status"] == "not ready" and body["not_ready"] == ["postgres", "kafka"]
    assert body["checks"]["postgres"] == "no answer within 0.2 s"
    assert body["checks"]["kafka"].startswith("down: ConnectionRefusedError")
    assert body["checks"]["x"] == "ok"


async def test_the_consumer_is_ready_once_partitions_of_its_topics_are_assigned() -> None:
    consumer: Any = None
    check = assigned_check(lambda: consumer)
    with pytest.raises(NotReady, match="not started"):
        await check()
    consumer = FakeConsumer({TopicPartition("app-__assignor-__leader", 0): 0}, {})
    with pytest.raises(NotReady, match="no partitions assigned"):
        await check()
    consumer = FakeConsumer({TopicPartition("kalo.x", 0): 0}, {})
    await check()
    with pytest.raises(NotReady, match="not connected"):
        await pool_check(lambda: None)()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_operations_port_serves_its_three_paths_and_404_elsewhere() -> None:
    port = free_port()
    runner = await start_ops_server("127.0.0.1", port, Readiness({"postgres": refused}))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            metrics = await c.get("/metrics")
            assert metrics.status_code == 200 and "process_cpu_seconds_total" in metrics.text
            assert (await c.get("/health")).json() == {"status": "ok"}
            ready = await c.get("/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "2"
            assert ready.json()["not_ready"] == ["postgres"]
            assert (await c.get("/anything")).status_code == 404
            assert (await c.get("/metrics/")).status_code == 404
    finally:
        await runner.cleanup()


class FakeAuditDb:
    """audit.records and audit.heads, as the chain check reads them."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.head: dict[str, Any] | None = None

    def sign(self) -> None:
        leaves = [leaf_hash(r) for r in self.records]
        self.head = {
            "tree_size": len(leaves),
            "root_hash": root(leaves),
            "timestamp_ms": 0,
            "key_id": "k",
            "signature": b"",
            "leaves_from": 0,
        }

    async def fetchrow(self, *_args: Any) -> dict[str, Any] | None:
        return self.head

    async def fetch(self, _sql: str, lo: int, hi: int) -> list[dict[str, Any]]:
        return [{"seq": i, "record": r} for i, r in enumerate(self.records) if lo <= i < hi]


async def test_the_chain_check_reads_each_record_once_and_sees_an_altered_one() -> None:
    db, chain = FakeAuditDb(), ChainCheck()
    assert await chain.check(db) is None  # no head yet
    db.records = [b"a", b"b", b"c"]
    db.sign()
    assert await chain.check(db) is True
    assert await chain.check(db) is None  # nothing new since
    db.records += [b"d", b"e"]
    db.sign()
    db.records[0] = b"altered"  # before the last check: not read again (`kalo audit verify` does)
    assert await chain.check(db) is True and chain.frontier.size == 5
    db.records += [b"f"]
    db.sign()
    db.records[5] = b"altered"  # after its head was signed
    assert await chain.check(db) is False
    db.records += [b"g"]
    db.sign()
    assert await chain.check(db) is False  # stays broken


async def test_a_deleted_record_breaks_the_chain() -> None:
    db, chain = FakeAuditDb(), ChainCheck()
    db.records = [b"a", b"b", b"c"]
    db.sign()
    del db.records[1]
    assert await chain.check(db) is False


async def test_the_gateway_labels_answers_given_before_routing_by_their_route() -> None:
    """413 and 415 come from middlewares (before the router chose a route), 404 from no route:
    each still has its route template, or `unmatched`; /metrics answers without a redirect."""
    from services.common.settings import Settings
    from services.gateway.app import create_app

    app = create_app(Settings(gateway_max_body_bytes=10))
    before = {
        s: sample(
            "kalo_gateway_http_requests_total", {"method": "POST", "handler": "/v1/declarations", "status": s}
        )
        for s in ("413", "415")
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        json_ = {"content-type": "application/json"}
        assert (await c.post("/v1/declarations", content=b"x" * 100, headers=json_)).status_code == 413
        assert (
            await c.post("/v1/declarations", content=b"x", headers={"content-type": "text/plain"})
        ).status_code == 415
        assert (await c.get("/v1/declarations/D-1")).status_code == 401
        scrape = await c.get("/metrics", follow_redirects=False)
        assert scrape.status_code == 200 and "kalo_gateway_http_requests_total" in scrape.text
    for s in ("413", "415"):
        labels = {"method": "POST", "handler": "/v1/declarations", "status": s}
        assert sample("kalo_gateway_http_requests_total", labels) == before[s] + 1
    labels = {"method": "GET", "handler": "/v1/declarations/{declaration_id}", "status": "401"}
    assert sample("kalo_gateway_http_requests_total", labels) >= 1


@pytest.mark.unit
async def test_an_informative_check_is_reported_but_does_not_make_the_service_unready() -> None:
    async def ok() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("refused")

    status, body = await Readiness({"postgres": ok, "kafka": down}, informative=frozenset({"kafka"})).report()
    assert status == 200 and body["checks"]["kafka"].startswith("down") and "not_ready" not in body
    status, body = await Readiness(
        {"postgres": down, "kafka": down}, informative=frozenset({"kafka"})
    ).report()
    assert status == 503 and body["not_ready"] == ["postgres"]
