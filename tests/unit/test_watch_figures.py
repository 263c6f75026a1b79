"""`kalo status --watch`: figures from the services' /metrics, from PostgreSQL and Kafka when
a service is down, and the view that shows them."""

from __future__ import annotations

import math

import httpx
import pytest
from rich.console import Console

from services.cli.watch import Watcher, metrics_urls, render
from services.common.scrape import parse, quantile, rate
from services.common.settings import Settings

pytestmark = pytest.mark.unit

ASSESSMENT_PAGE = """\
# TYPE kalo_assessment_declarations_total counter
kalo_assessment_declarations_total{{status="accepted"}} {accepted}
kalo_assessment_declarations_total{{status="rejected"}} 10
# TYPE kalo_assessment_lines_total counter
kalo_assessment_lines_total{{status="accepted"}} {lines}
# TYPE kalo_assessment_consumer_lag gauge
kalo_assessment_consumer_lag{{topic="kalo.declarations.submitted",partition="0"}} 7
kalo_assessment_consumer_lag{{topic="kalo.declarations.submitted",partition="1"}} 5
# TYPE kalo_assessment_dlq_messages_total counter
kalo_assessment_dlq_messages_total{{topic="kalo.declarations.submitted"}} 2
# TYPE kalo_assessment_end_to_end_seconds histogram
kalo_assessment_end_to_end_seconds_bucket{{le="1.0"}} {fast}
kalo_assessment_end_to_end_seconds_bucket{{le="10.0"}} {slow}
kalo_assessment_end_to_end_seconds_bucket{{le="+Inf"}} {slow}
kalo_assessment_end_to_end_seconds_count {slow}
kalo_assessment_end_to_end_seconds_sum 1.0
"""
GATEWAY_PAGE = """\
# TYPE kalo_gateway_outbox_pending gauge
kalo_gateway_outbox_pending 4
# TYPE kalo_gateway_receipt_seconds histogram
kalo_gateway_receipt_seconds_bucket{channel="json",le="0.01"} 90
kalo_gateway_receipt_seconds_bucket{channel="json",le="0.1"} 100
kalo_gateway_receipt_seconds_bucket{channel="json",le="+Inf"} 100
kalo_gateway_receipt_seconds_count{channel="json"} 100
kalo_gateway_receipt_seconds_sum{channel="json"} 1.0
"""
DATABASE = {
    "outbox_pending": 9.0,
    "received": 120.0,
    "decided": 110.0,
    "decided_last_minute": 60.0,
    "lines_last_minute": 600.0,
    "decided_p99_s": 2.5,
    "control_pending": 3.0,
    "control_escalated": 1.0,
}


def test_a_page_is_read_into_sums_and_buckets() -> None:
    page = parse(ASSESSMENT_PAGE.format(accepted=100, lines=900, fast=8, slow=10), at=0.0)
    assert page.total("kalo_assessment_declarations_total") == 110
    assert page.total("kalo_assessment_declarations_total", status="rejected") == 10
    assert page.total("kalo_assessment_consumer_lag") == 12
    assert page.total("kalo_gateway_outbox_pending") is None
    assert page.buckets("kalo_assessment_end_to_end_seconds") == {1.0: 8, 10.0: 10, math.inf: 10}


def test_the_p99_is_interpolated_in_its_bucket_as_prometheus_does() -> None:
    # 100 observations: 90 under 10 ms, 10 between 10 and 100 ms: rank 99 is the 9th of those 10.
    assert quantile(0.99, {0.01: 90, 0.1: 100, math.inf: 100}) == pytest.approx(0.01 + 0.09 * 9 / 10)
    # Between two scrapes: only what was observed meanwhile (here all of it in the first bucket).
    assert quantile(
        0.99, {0.01: 190, 0.1: 100 + 100, math.inf: 200}, {0.01: 90, 0.1: 100, math.inf: 100}
    ) == (pytest.approx(0.01 * 99 / 100))
    assert quantile(0.99, {1.0: 0, 10.0: 5, math.inf: 10}) == 10.0  # past the last bound: that bound
    assert quantile(0.99, {1.0: 3, math.inf: 3}, {1.0: 3, math.inf: 3}) is None  # nothing observed
    assert quantile(0.99, {1.0: 1, math.inf: 1}, {1.0: 5, math.inf: 5}) is None  # restarted


def test_a_rate_needs_two_readings_and_no_reset() -> None:
    assert rate(150.0, 100.0, 10.0) == 5.0
    assert rate(150.0, None, 10.0) is None
    assert rate(5.0, 100.0, 10.0) is None


def test_the_services_are_asked_on_loopback_when_they_bind_every_address() -> None:
    urls = metrics_urls(
        Settings(_env_file=None, gateway_host="0.0.0.0", metrics_host="0.0.0.0", ledger_metrics_port=9999)
    )
    assert urls["gateway"] == "http://127.0.0.1:8080/metrics"
    assert urls["ledger"] == "http://127.0.0.1:9999/metrics"
    assert set(urls) == {"gateway", "assessment", "liquidation", "ledger", "control", "audit"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher(pages: dict[int, str], clock: Clock, *, kafka: object) -> Watcher:
    """A watcher whose services answer `pages` (by port; others refuse) and whose PostgreSQL
    answers DATABASE."""
    settings = Settings(_env_file=None)

    def answer(request: httpx.Request) -> httpx.Response:
        page = pages.get(request.url.port or 0)
        if page is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, text=page)

    async def database(_: Settings) -> dict[str, float]:
        return DATABASE

    async def kafka_status(_: Settings) -> object:
        if isinstance(kafka, Exception):
            raise kafka
        return kafka

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return Watcher(settings, client, clock=clock, database=database, kafka=kafka_status)


async def test_figures_come_from_the_metrics_of_the_services_that_answer() -> None:
    clock = Clock()
    pages = {6066: ASSESSMENT_PAGE.format(accepted=100, lines=900, fast=8, slow=10), 8080: GATEWAY_PAGE}
    kafka = {"topics": {"kalo.dlq": 4}, "lag": {"kalo-ledger": 42, "kalo-assessment": 99}}
    w = watcher(pages, clock, kafka=kafka)
    await w.frame(2.0)
    clock.now += 10
    pages[6066] = ASSESSMENT_PAGE.format(accepted=150, lines=1400, fast=108, slow=110)
    frame = await w.frame(2.0)

    assert frame.state == {
        "gateway": True,
        "assessment": True,
        "liquidation": False,
        "ledger": False,
        "control": False,
        "audit": False,
    }
    assert (frame.declarations_per_s.value, frame.declarations_per_s.source) == (5.0, "metrics")
    assert frame.lines_per_s.value == 50.0
    assert (frame.lag["assessment"].value, frame.lag["assessment"].source) == (12, "metrics")
    # The ledger is down: its lag from its Kafka group; liquidation has neither.
    assert (frame.lag["ledger"].value, frame.lag["ledger"].source) == (42, "kafka")
    assert frame.lag["liquidation"].value is None
    assert frame.dlq["assessment"].value == 2 and frame.dlq_topic.value == 4
    # The control is down: its figures and the outbox (half of it is the control's) from PostgreSQL.
    assert (frame.outbox.value, frame.outbox.source) == (9, "database")
    assert (frame.control_pending.value, frame.control_escalated.value) == (3, 1)
    # Decided p99 over the last scrapes: 100 new observations, all under 1 s.
    assert frame.decided_p99.source == "metrics" and frame.decided_p99.value == pytest.approx(0.99)
    assert frame.receipt_p99.value == pytest.approx(0.091)
    assert frame.receipt_p99.source == "metrics, since start"  # no receipt between the two scrapes
    await w.client.aclose()


async def test_with_every_service_down_the_database_and_kafka_still_answer() -> None:
    w = watcher({}, Clock(), kafka=ConnectionError("no broker"))
    frame = await w.frame(3.0)
    assert not any(frame.state.values())
    assert (frame.declarations_per_s.value, frame.declarations_per_s.source) == (1.0, "database")
    assert frame.lines_per_s.value == 10.0
    assert (frame.decided_p99.value, frame.decided_p99.source) == (2.5, "database")
    assert frame.receipt_p99.value is None
    assert frame.problems == {"kafka": "ConnectionError: no broker"}

    console = Console(width=110, record=True, color_system=None)
    console.print(render(frame))
    screen = console.export_text()
    assert "kafka: not read (ConnectionError: no broker)" in screen
    lines = {line.split("│")[1].strip(): line for line in screen.splitlines() if line.count("│") >= 3}
    assert "down" in lines["gateway"] and "down" in lines["audit"]
    assert "1.0" in lines["declarations/s"] and "database" in lines["declarations/s"]
    assert "120" in lines["declarations received"]
    assert "2.50 s" in lines["declaration decided"] and "met" in lines["declaration decided"]
    assert "—" in lines["DLQ messages (topic)"]
    await w.client.aclose()


def test_every_family_the_watch_reads_is_exported_by_its_service() -> None:
    """The names in services/cli/watch.py, against deploy/prometheus/exported_metrics.yml."""
    import re
    from pathlib import Path

    import yaml

    from services.cli import watch

    root = Path(__file__).resolve().parents[2]
    jobs = yaml.safe_load((root / "deploy/prometheus/exported_metrics.yml").read_text())["jobs"]
    source = Path(watch.__file__).read_text()
    names = set(re.findall(r'"(kalo_[a-z_]+)"', source))
    for suffix in re.findall(r'f"kalo_\{name\}_([a-z_]+)"', source):
        names |= {f"kalo_{service}_{suffix}" for service in watch.CONSUMERS}
    assert len(names) > 10, names
    for name in sorted(names):
        service = name.split("_")[1]
        assert name in jobs[service], f"{name} is not exported by {service}"
