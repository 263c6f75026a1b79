"""How a service finds its PostgreSQL role's DSN."""

import os

import pytest

from services.common.settings import Settings

ADMIN = "postgresql://kalo:admin-secret@db.example:5432/kalo?sslmode=require"


@pytest.fixture(autouse=True)
def no_kalo_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("KALO_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir("/")  # no .env file either


def test_a_service_connects_as_its_own_role_to_the_admins_server_and_database() -> None:
    s = Settings(database_url=ADMIN, ledger_db_password="l3dger")
    assert s.service_dsn("ledger") == "postgresql://kalo_ledger:l3dger@db.example:5432/kalo?sslmode=require"
    # No password of its own: none at all (trust, peer, a client certificate), never the admin's.
    assert s.service_dsn("gateway") == "postgresql://kalo_gateway@db.example:5432/kalo?sslmode=require"
    assert s.dsn == ADMIN  # admin tasks keep the admin's DSN


def test_a_password_is_quoted_in_the_dsn() -> None:
    s = Settings(database_url="postgresql://db/kalo", gateway_db_password="p@ss/w:rd %")
    assert s.service_dsn("gateway") == "postgresql://kalo_gateway:p%40ss%2Fw%3Ard%20%25@db/kalo"


def test_the_default_dsn_and_a_single_role_deployment() -> None:
    assert (
        Settings(pg_port=6000).service_dsn("assessment") == "postgresql://kalo_assessment@127.0.0.1:6000/kalo"
    )
    single = Settings(database_url=ADMIN, db_roles=False, gateway_db_password="ignored")
    assert single.service_dsn("gateway") == ADMIN


def test_only_the_services_have_roles() -> None:
    with pytest.raises(ValueError):
        Settings().service_dsn("rules")
