"""Generated hostile declarations against the live gateway (hypothesis): JSON bodies and CSV
uploads with control characters, huge and non-ASCII numbers, odd periods, filings and
regimes, formulas and quotes. No answer is a 5xx, and every declaration that got a 202 is
decided (accepted or rejected) within a bound — none stays `received`."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import Stack
from tests.integration.helpers import auth, register_employer
from tests.properties.test_door_decides import declarations, hostile_int, hostile_text, periods, readable

EMPLOYERS = 20
JSON_EXAMPLES = 1500
CSV_EXAMPLES = 700
DECIDED_WITHIN_S = 120

real_periods = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(2000, 2026), st.integers(1, 9))
cells = st.one_of(
    st.integers(-5, 10**9).map(str),
    hostile_int.map(str),
    hostile_text,
    st.sampled_from(["３０", "٣٠", "1e3", "", " 7 ", "=1+1", '"', "a,b", "x\ny", "9" * 4400]),
)
COLUMNS = [
    "worker_id",
    "category",
    "days_worked",
    "base_salary",
    "bonuses",
    "benefits_in_kind",
    "expense_reimbursements",
]


def _csv(rows: list[list[str]], header: list[str], delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


csv_files = st.builds(
    _csv,
    st.lists(
        st.one_of(
            st.tuples(
                st.one_of(st.from_regex(r"W[0-9]{1,4}", fullmatch=True), hostile_text),
                st.sampled_from(["salarie", "fonctionnaire", "x"]),
                st.integers(0, 31).map(str),
                st.integers(0, 10**7).map(str),
                st.just("0"),
                st.just("0"),
                st.just("0"),
            ).map(list),
            st.lists(cells, min_size=7, max_size=7),
        ),
        max_size=5,
    ),
    st.one_of(
        st.just(COLUMNS), st.permutations(COLUMNS).map(list), st.lists(hostile_text, min_size=1, max_size=8)
    ),
    st.sampled_from([",", ";"]),
)


class Tally:
    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.receipted: list[str] = []
        self.five_hundreds: list[str] = []

    def record(self, r: httpx.Response, what: str) -> None:
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        if r.status_code >= 500:
            self.five_hundreds.append(f"{r.status_code} {what[:300]!r}: {r.text[:300]}")
        if r.status_code == 202:
            self.receipted.append(r.json()["declaration_id"])


def _send_generated(url: str, employers: list[tuple[str, str]], tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:

        @settings(
            max_examples=JSON_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            doc=st.one_of(readable, readable, declarations),
            who=st.integers(0, EMPLOYERS - 1),
            period=real_periods,
        )
        def submit_json(doc: dict[str, Any], who: int, period: str) -> None:
            employer_id, key = employers[who]
            if who > 0:  # past authorisation, into the handlers (employer 0 mostly gets 403s)
                doc["employer"]["id"] = employer_id
                if isinstance(doc.get("period"), str) and len(doc["period"]) == 7:
                    doc["period"] = period  # spread over many months: fewer duplicates (409)
            body = httpx.Request("POST", "/", json=doc).content
            r = client.post(
                "/v1/declarations", content=body, headers={**auth(key), "Content-Type": "application/json"}
            )
            tally.record(r, body.decode(errors="replace"))

        @settings(
            max_examples=CSV_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(
            data=csv_files,
            who=st.integers(0, EMPLOYERS - 1),
            period=st.one_of(real_periods, periods),
            form=st.dictionaries(
                st.sampled_from(["filing", "risk_class", "regime", "replaces"]),
                st.one_of(hostile_text, hostile_int.map(str)),
                max_size=2,
            ),
        )
        def submit_csv(data: bytes, who: int, period: str, form: dict[str, str]) -> None:
            _, key = employers[who]
            fields = {k: v.encode("utf-8", "surrogatepass") for k, v in {"period": period, **form}.items()}
            r = client.post(
                "/v1/declarations/upload",
                headers=auth(key),
                data=fields,  # type: ignore[arg-type]
                files={"file": ("d.csv", data, "text/csv")},
            )
            tally.record(r, data.decode(errors="replace"))

        submit_json()
        submit_csv()


async def test_generated_hostile_declarations_get_no_5xx_and_every_receipt_is_decided(
    services: Stack, db: Any
) -> None:
    employers = [await register_employer(db) for _ in range(EMPLOYERS)]
    tally = Tally()
    await asyncio.to_thread(_send_generated, services.gateway_url, employers, tally)
    print(f"statuses: {sorted(tally.statuses.items())}, receipted: {len(tally.receipted)}")
    assert tally.five_hundreds == []
    assert sum(tally.statuses.values()) >= JSON_EXAMPLES + CSV_EXAMPLES
    assert len(tally.receipted) >= 100  # enough of them got through to be decided
    deadline = time.monotonic() + DECIDED_WITHIN_S
    while True:
        undecided = await db.fetch(
            "SELECT declaration_id FROM gateway.declarations"
            " WHERE declaration_id = ANY($1::text[]) AND status = 'received'",
            tally.receipted,
        )
        if not undecided:
            break
        assert time.monotonic() < deadline, f"{len(undecided)} receipted but undecided: {undecided[:5]}"
        await asyncio.sleep(1)
    decided = await db.fetchval(
        "SELECT count(*) FROM gateway.declarations"
        " WHERE declaration_id = ANY($1::text[]) AND status IN ('accepted', 'rejected')",
        tally.receipted,
    )
    assert decided == len(set(tally.receipted))
