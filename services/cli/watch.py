"""`kalo status --watch`: a live terminal view of the running stack, refreshed every few seconds.

Each figure comes from the services' own /metrics when they answer, and otherwise from
PostgreSQL or Kafka (the outbox table, the DLQ topic's offsets, the control's pending
liquidations, the consumer groups' lag), so that the view still says what it can with a
service down; the source of each figure is shown beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from services.common.scrape import Scrape, quantile, rate, scrape
from services.common.settings import Settings

SERVICES = ("gateway", "assessment", "liquidation", "ledger", "control", "audit")
CONSUMERS = SERVICES[1:]
# The objectives (README, "Alerts and objectives"): p99 of each latency, in seconds.
RECEIPT_OBJECTIVE_S = 0.25
DECIDED_OBJECTIVE_S = 60.0
WINDOW_S = 60.0  # rates and quantiles from /metrics: over the last minute of scrapes


def metrics_urls(s: Settings) -> dict[str, str]:
    """Where each service serves /metrics (a wildcard bind address is asked on loopback)."""

    def host(h: str) -> str:
        return "127.0.0.1" if h in ("0.0.0.0", "::", "") else h

    ports = {
        "gateway": (s.gateway_host, s.gateway_port),
        "assessment": (s.metrics_host, s.assessment_web_port),
        "liquidation": (s.metrics_host, s.liquidation_web_port),
        "ledger": (s.metrics_host, s.ledger_metrics_port),
        "control": (s.metrics_host, s.control_metrics_port),
        "audit": (s.metrics_host, s.audit_metrics_port),
    }
    return {name: f"http://{host(h)}:{port}/metrics" for name, (h, port) in ports.items()}


@dataclass(frozen=True)
class Figure:
    """A value and where it came from (`metrics`, `database`, `kafka`); None: unknown."""

    value: float | None
    source: str = ""


UNKNOWN = Figure(None)


@dataclass
class Frame:
    """What one refresh shows."""

    at: datetime
    interval: float
    state: dict[str, bool] = field(default_factory=dict)  # service → its /metrics answered
    lag: dict[str, Figure] = field(default_factory=dict)
    dlq: dict[str, Figure] = field(default_factory=dict)  # per service, since it started
    declarations_per_s: Figure = UNKNOWN
    lines_per_s: Figure = UNKNOWN
    received: Figure = UNKNOWN
    decided: Figure = UNKNOWN
    outbox: Figure = UNKNOWN
    dlq_topic: Figure = UNKNOWN
    control_pending: Figure = UNKNOWN
    control_escalated: Figure = UNKNOWN
    receipt_p99: Figure = UNKNOWN
    decided_p99: Figure = UNKNOWN
    problems: dict[str, str] = field(default_factory=dict)  # kafka / postgres → why not read


def first(*figures: Figure) -> Figure:
    return next((f for f in figures if f.value is not None), UNKNOWN)


class Watcher:
    """Scrapes every service, reads PostgreSQL and Kafka, keeps the last minute of scrapes."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        database: Callable[[Settings], Any] | None = None,
        kafka: Callable[[Settings], Any] | None = None,
    ) -> None:
        from services.common.status import database_watch, kafka_status

        self.settings = settings
        self.client = client
        self.clock = clock
        self.database = database or database_watch
        self.kafka = kafka or kafka_status
        self.urls = metrics_urls(settings)
        self.history: dict[str, deque[Scrape]] = {name: deque() for name in SERVICES}

    async def frame(self, interval: float) -> Frame:
        now = self.clock()
        scrapes = await asyncio.gather(*(scrape(self.client, url, now) for url in self.urls.values()))
        db, kafka = await asyncio.gather(
            _or_problem(self.database(self.settings)), _or_problem(self.kafka(self.settings))
        )
        for name, current in zip(SERVICES, scrapes, strict=True):
            past = self.history[name]
            past.append(current)
            while past and now - past[0].at > WINDOW_S:
                past.popleft()
        return self.compose(interval, db, kafka)

    def _pair(self, name: str) -> tuple[Scrape, Scrape | None]:
        """The latest scrape of a service and its oldest one of the window that answered."""
        past = self.history[name]
        latest = past[-1]
        older = next((s for s in past if s.up and s is not latest), None)
        return latest, older

    def compose(self, interval: float, db: Any, kafka: Any) -> Frame:
        frame = Frame(datetime.now(UTC), interval)
        if isinstance(db, str):
            frame.problems["postgres"], db = db, {}
        if isinstance(kafka, str):
            frame.problems["kafka"], kafka = kafka, {}
        latest = {name: self._pair(name)[0] for name in SERVICES}
        frame.state = {name: s.up for name, s in latest.items()}
        groups = kafka.get("lag", {})
        prefix = self.settings.topic_prefix
        for name in CONSUMERS:
            scraped = latest[name]
            group_lag = groups.get(f"{prefix}kalo-{name}")
            frame.lag[name] = first(
                Figure(scraped.total(f"kalo_{name}_consumer_lag"), "metrics"),
                Figure(None if group_lag is None else float(group_lag), "kafka"),
            )
            frame.dlq[name] = Figure(scraped.total(f"kalo_{name}_dlq_messages_total"), "metrics")
        self._throughput(frame, db)
        dlq_size = kafka.get("topics", {}).get(f"{prefix}kalo.dlq")
        frame.dlq_topic = Figure(None if dlq_size is None else float(dlq_size), "kafka")
        gateway, control = latest["gateway"], latest["control"]
        outbox = [
            v
            for v in (
                gateway.total("kalo_gateway_outbox_pending"),
                control.total("kalo_control_outbox_pending"),
            )
            if v is not None
        ]
        frame.outbox = first(
            Figure(sum(outbox) if gateway.up and control.up and outbox else None, "metrics"),
            Figure(db.get("outbox_pending"), "database"),
        )
        frame.control_pending = first(
            Figure(control.total("kalo_control_pending"), "metrics"),
            Figure(db.get("control_pending"), "database"),
        )
        frame.control_escalated = first(
            Figure(control.total("kalo_control_escalated"), "metrics"),
            Figure(db.get("control_escalated"), "database"),
        )
        frame.received = Figure(db.get("received"), "database")
        frame.decided = Figure(db.get("decided"), "database")
        frame.receipt_p99 = self._p99("gateway", "kalo_gateway_receipt_seconds")
        frame.decided_p99 = first(
            self._p99("assessment", "kalo_assessment_end_to_end_seconds"),
            Figure(db.get("decided_p99_s"), "database"),
        )
        return frame

    def _throughput(self, frame: Frame, db: dict[str, Any]) -> None:
        latest, older = self._pair("assessment")
        if latest.up and older is not None:
            seconds = latest.at - older.at
            frame.declarations_per_s = Figure(
                rate(
                    latest.total("kalo_assessment_declarations_total"),
                    older.total("kalo_assessment_declarations_total"),
                    seconds,
                ),
                "metrics",
            )
            frame.lines_per_s = Figure(
                rate(
                    latest.total("kalo_assessment_lines_total"),
                    older.total("kalo_assessment_lines_total"),
                    seconds,
                ),
                "metrics",
            )
        per_minute = {k: db.get(k) for k in ("decided_last_minute", "lines_last_minute")}
        frame.declarations_per_s = first(
            frame.declarations_per_s,
            Figure(_per_second(per_minute["decided_last_minute"]), "database"),
        )
        frame.lines_per_s = first(
            frame.lines_per_s, Figure(_per_second(per_minute["lines_last_minute"]), "database")
        )

    def _p99(self, service: str, histogram: str) -> Figure:
        latest, older = self._pair(service)
        if not latest.up:
            return UNKNOWN
        windowed = (
            None if older is None else quantile(0.99, latest.buckets(histogram), older.buckets(histogram))
        )
        if windowed is not None:
            return Figure(windowed, "metrics")
        return Figure(quantile(0.99, latest.buckets(histogram)), "metrics, since start")


def _per_second(per_minute: float | None) -> float | None:
    return None if per_minute is None else per_minute / 60.0


async def _or_problem(work: Any) -> Any:
    """The result, or why it failed (a line of text: the view keeps going)."""
    try:
        return await asyncio.wait_for(work, timeout=10)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:120] or type(exc).__name__


# Rendering ------------------------------------------------------------------------------------


def _number(figure: Figure, unit: str = "", digits: int = 0) -> Text:
    if figure.value is None:
        return Text("—", style="dim")
    return Text(f"{figure.value:,.{digits}f}{unit}")


def _source(figure: Figure) -> Text:
    return Text(figure.source if figure.value is not None else "", style="dim")


def _seconds(value: float) -> str:
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def _objective(name: str, figure: Figure, objective: float) -> tuple[Text, ...]:
    if figure.value is None:
        return Text(name), Text("—", style="dim"), Text(_seconds(objective)), Text(""), Text("")
    met = figure.value <= objective
    verdict = Text("met" if met else "MISSED", style="green" if met else "bold red")
    return Text(name), Text(_seconds(figure.value)), Text(_seconds(objective)), verdict, _source(figure)


def render(frame: Frame) -> RenderableType:
    title = Text.assemble(
        ("Kalo ", "bold"),
        f"{frame.at:%Y-%m-%d %H:%M:%S} UTC, every {frame.interval:g} s (Ctrl-C to stop)",
    )
    flow = Table(title="Throughput and backlog", title_justify="left", expand=False)
    flow.add_column("figure")
    flow.add_column("value", justify="right")
    flow.add_column("from")
    for label, figure, digits in (
        ("declarations/s", frame.declarations_per_s, 1),
        ("lines/s", frame.lines_per_s, 1),
        ("declarations received", frame.received, 0),
        ("declarations decided", frame.decided, 0),
        ("outbox backlog", frame.outbox, 0),
        ("DLQ messages (topic)", frame.dlq_topic, 0),
        ("control pending", frame.control_pending, 0),
        ("control escalated", frame.control_escalated, 0),
    ):
        flow.add_row(label, _number(figure, digits=digits), _source(figure))

    services = Table(title="Services", title_justify="left")
    services.add_column("service")
    services.add_column("state")
    services.add_column("lag", justify="right")
    services.add_column("from")
    services.add_column("DLQ since start", justify="right")
    for name in SERVICES:
        up = frame.state.get(name, False)
        lag = frame.lag.get(name, UNKNOWN)
        services.add_row(
            name,
            Text("up", style="green") if up else Text("down", style="bold red"),
            _number(lag) if name in frame.lag else Text("n/a", style="dim"),
            _source(lag),
            _number(frame.dlq.get(name, UNKNOWN)) if name in frame.dlq else Text("n/a", style="dim"),
        )

    objectives = Table(title="Objectives (p99)", title_justify="left")
    for column in ("latency", "p99", "objective", "", "from"):
        objectives.add_column(column, justify="right" if column in ("p99", "objective") else "left")
    objectives.add_row(*_objective("receipt", frame.receipt_p99, RECEIPT_OBJECTIVE_S))
    objectives.add_row(*_objective("declaration decided", frame.decided_p99, DECIDED_OBJECTIVE_S))

    parts: list[RenderableType] = [title, flow, services, objectives]
    for part, problem in sorted(frame.problems.items()):
        parts.append(Text(f"{part}: not read ({problem})", style="bold red"))
    return Group(*parts)


async def _run(settings: Settings, interval: float, console: Console, frames: int | None) -> None:
    async with httpx.AsyncClient(timeout=min(2.0, interval)) as client:
        watcher = Watcher(settings, client)
        with contextlib.ExitStack() as stack:
            live = (
                stack.enter_context(Live(console=console, auto_refresh=False))
                if console.is_terminal
                else None
            )
            shown = 0
            while frames is None or shown < frames:
                if shown:
                    await asyncio.sleep(interval)
                view = render(await watcher.frame(interval))
                if live is None:
                    console.print(view)  # piped: each refresh printed after the last
                else:
                    live.update(view, refresh=True)
                shown += 1


def watch(settings: Settings, interval: float, console: Console, frames: int | None = None) -> None:
    """Refresh the view every `interval` seconds until Ctrl-C (or `frames` refreshes)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(settings, interval, console, frames))
