"""The controllers' page in a real browser: Debian's headless Chromium driven by Selenium
(pointed at /usr/bin/chromium and /usr/bin/chromedriver; Selenium Manager downloads
nothing). Two controllers sign in and approve a flagged liquidation, the second using only
the keyboard; the minutes download as a PDF. A screenshot of the liquidation's page is kept
under tests/artifacts/ (its path is printed)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from contracts.pensions import CareerAsOf
from services.common.hashing import api_key_hash
from services.control import minutes
from services.gateway.registry import add_staff_key
from tests.integration.conftest import Stack, wait_http
from tests.support.control import PLAIN, SPIKE, liquidated, produce

CHROMIUM = os.environ.get("KALO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KALO_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def browser(downloads: Path) -> WebDriver:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(
            f"Chromium missing ({CHROMIUM}, {CHROMEDRIVER}): `make up` installs it (deploy/local/browser.sh)"
        )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1800"):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.implicitly_wait(5)
    return driver


@pytest.fixture(scope="module")
def control(stack: Stack) -> Iterator[str]:
    proc = stack.start("control", "control-browser")
    url = f"http://127.0.0.1:{stack.settings.control_port}"
    try:
        wait_http(f"{url}/health", proc)
    except Exception:
        print(stack.log_tail("control-browser"))
        raise
    yield url
    stack.stop("control-browser")


def sign_in(driver: WebDriver, url: str, key: str) -> None:
    driver.get(f"{url}/signin")
    field = driver.find_element(By.ID, "key")
    label = driver.find_element(By.CSS_SELECTOR, "label[for=key]")
    assert label.text == "Controller API key"
    field.send_keys(key, Keys.ENTER)  # the form submits from the keyboard
    wait_until(driver, lambda d: d.current_url.endswith("/liquidations"))


def wait_until(driver: WebDriver, ready, seconds: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready(driver):
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out on {driver.current_url}: {driver.find_element(By.TAG_NAME, 'main').text[:500]}"
    )


def listed(driver: WebDriver, url: str, claim_id: str) -> bool:
    driver.get(f"{url}/liquidations?status=pending")
    return bool(driver.find_elements(By.CSS_SELECTOR, f'tr[data-claim="{claim_id}"]'))


async def test_two_controllers_approve_a_flagged_liquidation_and_download_the_minutes(
    stack: Stack, control: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(stack.settings.dsn)
    try:
        alice = await add_staff_key(conn, role="controller", label="Awa Traoré")
        bob = await add_staff_key(conn, role="controller", label="Bakary Keïta")
        filer = await add_staff_key(conn, role="backoffice", label="INPS Bamako")
        # CB-SPIKE's career: 276 months imported from before Kalo, then 24 assessed.
        sources = [(SPIKE[0][0], SPIKE[275][0], "imported"), (SPIKE[276][0], SPIKE[-1][0], "assessed")]
        events = [
            liquidated(
                "CB-SPIKE",
                SPIKE,
                worker_id="WB-1",
                filed_by=api_key_hash(filer),
                sources=sources,
                as_of=CareerAsOf(
                    read_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
                    ledger_offsets={
                        "kalo.declarations.assessed": {"0": 24},
                        "kalo.careers.imported": {"0": 1},
                    },
                    assessed_rows=24,
                    imported_rows=276,
                ),
            ),
            liquidated("CB-LATE", SPIKE, worker_id="WB-2", filed_by=api_key_hash(filer)),
            liquidated("CB-PLAIN", PLAIN, worker_id="WB-3", filed_by=api_key_hash(filer)),
        ]
        await produce(stack.settings, *events)
        deadline = time.monotonic() + 60
        while await conn.fetchval("SELECT count(*) FROM control.liquidations WHERE claim_id LIKE 'CB-%'") < 3:
            assert time.monotonic() < deadline, stack.log_tail("control-browser")
            time.sleep(0.3)
        # CB-LATE has waited longer than the legal delay: escalated, listed first.
        await conn.execute(
            "UPDATE control.liquidations SET escalate_at = now() - interval '1 day' "
            "WHERE claim_id = 'CB-LATE'"
        )
    finally:
        await conn.close()

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    first, second = browser(downloads), browser(downloads)
    try:
        # Not signed in: the page asks for a key; a key that is not a controller's is refused.
        first.get(f"{control}/liquidations")
        assert first.current_url.endswith("/signin")
        first.find_element(By.ID, "key").send_keys(filer, Keys.ENTER)
        assert "not a controller" in first.find_element(By.CSS_SELECTOR, "[role=alert]").text

        # Alice signs in, opens a session and sees the pending list, escalated first.
        sign_in(first, control, alice)
        first.find_element(By.ID, "open-session").click()
        wait_until(first, lambda d: listed(d, control, "CB-SPIKE"))
        rows = first.find_elements(By.CSS_SELECTOR, "#liquidations tbody tr")
        assert rows[0].get_attribute("data-claim") == "CB-LATE"
        assert "ESCALATED" in rows[0].text
        spike_row = first.find_element(By.CSS_SELECTOR, 'tr[data-claim="CB-SPIKE"]')
        assert "SALARY_SPIKE" in spike_row.text and "2 approvals needed" in spike_row.text
        assert not first.find_elements(By.CSS_SELECTOR, 'tr[data-claim="CB-PLAIN"]')  # approved by itself
        ARTIFACTS.mkdir(exist_ok=True)
        first.save_screenshot(str(ARTIFACTS / "control-pending.png"))

        # The liquidation's page: career chart, reference window, re-computation side by side.
        spike_row.find_element(By.LINK_TEXT, "CB-SPIKE").click()
        wait_until(first, lambda d: d.find_elements(By.ID, "comparison"))
        chart = first.find_element(By.CSS_SELECTOR, "svg.career-chart")
        assert chart.find_elements(By.CSS_SELECTOR, "rect.window")
        # Imported months apart from assessed ones: their own fill, named in the legend.
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.imported")) == 276
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.assessed")) == 24
        legend = chart.find_element(By.CSS_SELECTOR, "g.legend").text
        assert "imported months (before Kalo)" in legend and "assessed months (declarations)" in legend
        fills = {
            chart.find_element(By.CSS_SELECTOR, f"rect.{kind}").get_attribute("fill")
            for kind in ("imported", "assessed")
        }
        assert len(fills) == 2
        desc = chart.find_element(By.TAG_NAME, "desc").get_attribute("textContent")
        assert "24 assessed from declarations, 276 imported from before Kalo" in desc
        caption = first.find_element(By.CSS_SELECTOR, "figure.chart figcaption").text
        assert "Read 2026-11-30 09:00 UTC: 24 month(s) × employer assessed" in caption, caption
        assert "276 imported from before Kalo" in caption
        assert "SALARY_SPIKE" in first.find_element(By.ID, "flags").text
        comparison = first.find_element(By.ID, "comparison").text
        assert "monthly_pension" in comparison and "(differs)" not in comparison
        shot = ARTIFACTS / "control-liquidation.png"
        first.save_screenshot(str(shot))
        print(f"\nscreenshot of the liquidation's page: {shot}")
        first.find_element(By.ID, "approve").click()
        wait_until(first, lambda d: d.find_elements(By.ID, "done"))
        assert first.find_element(By.ID, "status").text == "PENDING"

        # Bob: a rejection without a reason is refused; he approves with the keyboard only.
        sign_in(second, control, bob)
        second.get(f"{control}/liquidations/CB-SPIKE")
        second.find_element(By.ID, "reject").click()
        wait_until(second, lambda d: d.find_elements(By.ID, "error"))
        assert "written reason" in second.find_element(By.ID, "error").text
        reason = second.find_element(By.ID, "reason")
        assert second.find_element(By.CSS_SELECTOR, "label[for=reason]").text.startswith("Reason")
        reason.send_keys("Payslips 2024-2026 checked against the employer's declarations.")
        reason.send_keys(Keys.TAB)  # to the Approve button
        assert second.switch_to.active_element.get_attribute("id") == "approve"
        second.switch_to.active_element.send_keys(Keys.ENTER)
        wait_until(second, lambda d: d.find_elements(By.ID, "done"))
        assert second.find_element(By.ID, "status").text == "APPROVED"
        decisions = second.find_element(By.ID, "decisions").text
        assert "Awa Traoré" in decisions and "Bakary Keïta" in decisions

        # A form posted without its CSRF token is refused, even with the session cookie.
        cookie = second.get_cookie("kalo_control_session")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        forged = httpx.post(
            f"{control}/liquidations/CB-LATE/decide",
            data={"decision": "approve"},
            cookies={"kalo_control_session": cookie["value"]},
        )
        assert forged.status_code == 403

        # Alice closes her session; the minutes download as a PDF and list the decisions.
        first.get(f"{control}/sessions")
        first.find_element(By.ID, "close-session").click()
        wait_until(first, lambda d: d.find_elements(By.ID, "seal"))
        seal = first.find_element(By.ID, "seal").text
        first.save_screenshot(str(ARTIFACTS / "control-minutes.png"))
        assert "CB-SPIKE" in first.find_element(By.ID, "reviewed").text
        first.find_element(By.ID, "minutes-pdf").click()
        deadline = time.monotonic() + 20
        while not (pdfs := [p for p in downloads.glob("*.pdf")]):
            assert time.monotonic() < deadline, "the minutes' PDF was not downloaded"
            time.sleep(0.2)
        time.sleep(0.5)
        assert pdfs[0].read_bytes().startswith(b"%PDF-")
        print(f"minutes downloaded: {pdfs[0]} ({pdfs[0].stat().st_size} bytes)")
        json_url = first.find_element(By.LINK_TEXT, "JSON").get_attribute("href")
        doc = orjson.loads(httpx.get(json_url, headers={"Authorization": f"Bearer {bob}"}).content)
        assert minutes.verify(doc) and doc["seal"]["sha256"] == seal
        [item] = [i for i in doc["minutes"]["liquidations"] if i["claim_id"] == "CB-SPIKE"]
        assert [d["controller_label"] for d in item["decisions"]] == ["Awa Traoré", "Bakary Keïta"]
        assert item["status"] == "approved"
    finally:
        first.quit()
        second.quit()
