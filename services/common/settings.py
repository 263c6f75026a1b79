"""Process settings, read from `KALO_*` environment variables (and `.env` if present)."""

from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The services that connect to PostgreSQL, each as its own login role `kalo_<service>`.
DB_SERVICES = ("gateway", "assessment", "ledger", "liquidation", "control", "audit")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KALO_", env_file=".env", extra="ignore")

    kafka_port: int = 9092
    kafka_bootstrap: str | None = None
    pg_port: int = 5433
    pg_db: str = "kalo"
    pg_user: str = "kalo"
    # The admin's DSN (migrations, sandboxes, `kalo status`). The services connect with it
    # too, but as their own role (see `service_dsn`).
    database_url: str | None = None
    # Each service connects as its own role, `kalo_<service>`, which may write only its own
    # schema. False: every service connects as the admin of `database_url` (a single-role
    # deployment: no least privilege, any service may write any table).
    db_roles: bool = True
    # The roles' passwords (None: none sent, e.g. trust or peer authentication); `kalo db
    # migrate` sets the password of each role whose variable it is given.
    gateway_db_password: str | None = None
    assessment_db_password: str | None = None
    ledger_db_password: str | None = None
    liquidation_db_password: str | None = None
    control_db_password: str | None = None

    topic_prefix: str = ""
    # Log lines: JSON when stderr is not a terminal, text on one (auto), or forced.
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Where faust keeps its local state (table stores, offsets cache).
    data_dir: str = "/tmp/kalo-data"
    partitions: int = 12
    # A worker that died is noticed after this long (then its partitions move on).
    kafka_session_timeout_s: float = 10.0
    # Keep in step with the broker's message.max.bytes (deploy/local/kafka.sh).
    max_message_bytes: int = 33_554_432

    # The legal parameter tree the services compute with (default: the one in the package).
    rules_dir: str | None = None

    # Declarations the assessment takes per batch (one registry lookup, one flush, one ack).
    assessment_batch: int = 500
    # Claims the liquidation takes per batch (one careers read, one flush, one ack).
    liquidation_batch: int = 500

    # The address every port binds (HTTP, metrics, health): 127.0.0.1 keeps them on this
    # machine; 0.0.0.0 opens them all (containers). The *_host settings below override it
    # for one port each and default to it.
    bind_host: str = "127.0.0.1"
    gateway_host: str = ""
    gateway_port: int = 8080
    gateway_max_body_bytes: int = 32 * 1024 * 1024
    # Bodies over gateway_large_body_bytes (a declaration of about 30,000 lines, a careers
    # file) are read whole, then handled gateway_large_bodies_at_once at a time; that many more
    # may wait (held whole: at most that many × gateway_max_body_bytes), beyond them 503.
    gateway_large_body_bytes: int = Field(default=1024 * 1024, ge=0)
    gateway_large_bodies_at_once: int = Field(default=2, ge=1)
    gateway_large_bodies_waiting: int = Field(default=8, ge=0)
    gateway_rate_per_second: float = 50.0
    gateway_rate_burst: int = 200
    # Failed authentications (unknown or revoked key) allowed per client address: each one
    # costs a database lookup, so a key-guessing client is answered 429 past this.
    gateway_auth_failures_per_second: float = 1.0
    gateway_auth_failures_burst: int = 20
    gateway_pool_size: int = 10
    gateway_workers: int = 1
    # Where the workers serve /metrics, /health and /ready (default: bind_host).
    metrics_host: str = ""
    assessment_web_port: int = 6066
    liquidation_web_port: int = 6067
    ledger_metrics_port: int = 9101
    control_metrics_port: int = 9102
    audit_metrics_port: int = 9103

    # The audit store (`kalo run audit`): its Ed25519 private key (a PEM file made by `kalo
    # audit keygen`), the heads file it appends every signed tree head to, and how often it
    # signs one: after this many records, or this many seconds when records wait.
    audit_signing_key: str | None = None
    audit_db_password: str | None = None  # the writer's role, kalo_audit
    # The public key `kalo audit verify` checks heads with (default: the signing key's .pub).
    audit_public_key: str | None = None
    audit_heads_file: str | None = None  # default: <data_dir>/audit-heads.jsonl
    audit_head_every_records: int = 1000
    audit_head_every_s: float = 10.0

    # The control commission: its API and page on this address (default: bind_host).
    control_host: str = ""
    control_port: int = 8081
    # An unflagged liquidation is approved without a controller (RULES.md §4; the dated
    # parameter control.auto_approve must allow it too).
    control_auto_approve: bool = True
    control_pool_size: int = 6
    # How long a controller stays signed in to the page.
    control_signin_hours: float = 8.0
    # Send the page's cookies only over HTTPS (behind a TLS-terminating proxy).
    control_cookie_secure: bool = False

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _hosts_default_to_bind_host(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bind = data.get("bind_host") or "127.0.0.1"
            for name in ("gateway_host", "control_host", "metrics_host"):
                if not data.get(name):
                    data[name] = bind
        return data

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def heads_file(self) -> str:
        return self.audit_heads_file or f"{self.data_dir}/audit-heads.jsonl"

    @property
    def dsn(self) -> str:
        return self.database_url or f"postgresql://{self.pg_user}@127.0.0.1:{self.pg_port}/{self.pg_db}"

    def db_password(self, service: str) -> str | None:
        if service not in DB_SERVICES:
            raise ValueError(f"no PostgreSQL role for {service!r}")
        password: str | None = getattr(self, f"{service}_db_password")
        return password

    def service_dsn(self, service: str) -> str:
        """The DSN a service connects with: the admin's host, port and database, as the
        service's role `kalo_<service>` with its own password (never the admin's)."""
        password = self.db_password(service)
        if not self.db_roles:
            return self.dsn
        parts = urlsplit(self.dsn)
        host = parts.netloc.rpartition("@")[2]
        user = f"kalo_{service}" + (f":{quote(password, safe='')}" if password else "")
        return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@lru_cache
def get_settings() -> Settings:
    return Settings()
