"""A declaration goes through every real hop: gateway → Kafka → assessment → Kafka → PostgreSQL."""

import httpx

from tests.integration.conftest import Stack
from tests.integration.helpers import (
    auth,
    consume_until,
    declaration,
    inps_line,
    register_employer,
    wait_status,
)


async def test_a_declaration_is_assessed_through_kafka_into_postgres(services: Stack, db) -> None:
    employer_id, key = await register_employer(db, risk_class=2)
    body = declaration(employer_id, [inps_line("W1", 250_000)])
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=30) as client:
        r = await client.post("/v1/declarations", json=body, headers=auth(key))
        assert r.status_code == 202, r.text
        receipt = r.json()
        assert receipt["status"] == "received"
        declaration_id = receipt["declaration_id"]

        # The assessed event is really on the topic …
        event = await consume_until(
            services.settings,
            "kalo.declarations.assessed",
            lambda e: e["data"]["declaration_id"] == declaration_id,
        )
        assert event["type"] == "declaration.assessed"
        assert event["data"]["totals"]["employer"] == 47_250
        assert event["data"]["totals"]["employee"] == 16_650

        # … the projection row is really in PostgreSQL …
        doc = await wait_status(client, declaration_id, key)
    row = await db.fetchrow(
        "SELECT status, event_id, totals FROM gateway.declarations WHERE declaration_id = $1",
        declaration_id,
    )
    assert row["status"] == "accepted"
    assert str(row["event_id"]) == event["id"]
    # … and the gateway reads it back.
    assert doc["status"] == "accepted"
    assert doc["report"]["totals"]["total"] == 63_900
    items = doc["report"]["lines"][0]["items"]
    assert [i["amount"] for i in items] == [20_000, 5_000, 13_500, 9_000, 8_750, 7_650]
