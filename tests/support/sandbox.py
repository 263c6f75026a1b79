"""A sandbox on the running stack: a fresh database and topic prefix (tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from services.common.db import migrate
from services.common.kafka import apply_topics
from services.common.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sandbox:
    settings: Settings
    env: dict[str, str]  # the environment a service process of this sandbox runs with


@asynccontextmanager
async def sandbox(
    data_dir: Path,
    *,
    partitions: int = 4,
    keep: bool = False,
    base: Settings | None = None,
    **overrides: str,
) -> AsyncIterator[Sandbox]:
    """Create a database and topics with a unique prefix; drop the database afterwards.
    `base`: the Kafka and PostgreSQL to use (default: the environment's, i.e. `make up`'s).
    The migrations create the services' roles when the cluster lacks them (every sandbox
    shares them) and grant them this database's schemas: the services started with `env`
    connect as their roles; `settings.dsn` stays the admin's."""
    base = base or Settings()
    run = uuid.uuid4().hex[:8]
    db = f"kalo_sb_{run}"
    admin = await asyncpg.connect(base.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    env = {
        **os.environ,
        "KALO_DATABASE_URL": base.dsn.rsplit("/", 1)[0] + f"/{db}",
        "KALO_KAFKA_BOOTSTRAP": base.bootstrap,
        "KALO_TOPIC_PREFIX": f"sb{run}.",
        "KALO_PARTITIONS": str(partitions),
        "KALO_GATEWAY_PORT": str(free_port()),
        "KALO_ASSESSMENT_WEB_PORT": str(free_port()),
        "KALO_LIQUIDATION_WEB_PORT": str(free_port()),
        "KALO_LEDGER_METRICS_PORT": str(free_port()),
        "KALO_CONTROL_METRICS_PORT": str(free_port()),
        "KALO_CONTROL_PORT": str(free_port()),
        "KALO_AUDIT_METRICS_PORT": str(free_port()),
        "KALO_DATA_DIR": str(data_dir),
        **overrides,
    }
    settings = Settings(**{k[5:].lower(): v for k, v in env.items() if k.startswith("KALO_")})
    try:
        await migrate(settings.dsn)
        await apply_topics(settings)
        yield Sandbox(settings, env)
    finally:
        if not keep:
            admin = await asyncpg.connect(base.dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            finally:
                await admin.close()
            await _delete_topics(base.bootstrap, f"sb{run}.")


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete the sandbox's topics (and faust's internal ones): every partition holds open
    files in the broker, and a suite of sandboxes left behind would exhaust them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names, timeout_ms=30_000)
    except Exception as exc:  # a broker stopped by a test: its own state goes with it
        print(f"sandbox: topics {prefix}* not deleted: {exc!r}")
    finally:
        await admin.close()
