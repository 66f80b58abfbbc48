"""The admin page in a real browser (headless Chromium through Selenium) against a running
daemon: it reads the tables, replays dead letters with the page's buttons, and a real
receiver gets them."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from daemon.db import database, outbox
from daemon.dev.receiver import WebhookReceiver
from daemon.dev.sandbox import Sandbox
from tests.integration.test_admin import free_port, write_config
from tests.integration.test_pipeline import all_polled, eventually, opened, running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"  # Debian's chromium-driver
DESKTOP = (1280, 1000)
PHONE = (390, 844)


PREREQUISITE = "Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"


def _missing() -> list[str]:
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium. Without it the test is skipped on a developer's machine, naming what
    to install; in CI (CI=true, which .ci/run's runner sets) it fails instead: CI installs it."""
    if missing := _missing():
        message = f"the admin page's browser test needs {PREREQUISITE}; missing: {missing}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def table(driver: WebDriver, table_id: str) -> list[dict[str, str]]:
    """The rows of the page's table `table_id`, as header -> cell text."""
    element = driver.find_element(By.ID, table_id)
    headers = [th.text for th in element.find_elements(By.CSS_SELECTOR, "thead th")]
    return [
        dict(zip(headers, (td.text for td in row.find_elements(By.TAG_NAME, "td")), strict=False))
        for row in element.find_elements(By.CSS_SELECTOR, "tbody tr")
        if len(row.find_elements(By.TAG_NAME, "td")) == len(headers)
    ]


async def test_the_admin_page_shows_counts_and_replays_dead_letters(
    tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver, browser: WebDriver
) -> None:
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'daemon.db'}"
    database.upgrade(database_url)
    config = write_config(
        tmp_path,
        database_url=database_url,
        sandbox=sandbox,
        receiver=receiver,
        subscriptions=[
            {"name": "new-deals", "trigger": "deal.added"},
            {"name": "new-activities", "trigger": "activity.added"},
        ],
        admin_section=f'listen = "127.0.0.1:{port}"\n',
        max_attempts=2,
    )
    url = f"http://127.0.0.1:{port}/"
    async with running(config):
        await eventually(lambda: all_polled(config))
        receiver.reply(503, times=4)  # the first two deals fail twice: two dead letters
        sandbox.add_deal(title="Engine order")
        sandbox.add_deal(title="Spare gears")

        async def dead(count: int) -> bool:
            async with opened(config) as engine:
                return (await outbox.counts(engine)).get(
                    "new-deals", outbox.SubscriptionCounts(0, 0, 0)
                ).dead == count

        await eventually(lambda: dead(2))
        sandbox.add_deal(title="Third deal")
        sandbox.add_activity(subject="Call Ada", type="call")
        await asyncio.to_thread(receiver.wait_for, 2, 20)

        async def recorded() -> bool:  # outcomes are written a moment after the POSTs
            async with opened(config) as engine:
                counts = await outbox.counts(engine)
            return counts["new-deals"].delivered == 1 and counts["new-activities"].delivered == 1

        await eventually(recorded)

        # Selenium blocks until the page loads, and the page is served by this event loop:
        # every browser step runs in a thread.
        replayed_event = await asyncio.to_thread(read_and_replay_one, browser, url)
        await asyncio.to_thread(receiver.wait_for, 3, 20)
        assert replayed_event in receiver.event_ids()
        await eventually(lambda: dead(1))

        async def replayed_recorded() -> bool:
            async with opened(config) as engine:
                return (await outbox.counts(engine))["new-deals"].delivered == 2

        await eventually(replayed_recorded)
        await asyncio.to_thread(
            check_replayed_and_replay_all, browser, url, replayed_event, tmp_path
        )
        await asyncio.to_thread(receiver.wait_for, 4, 20)
        await eventually(lambda: dead(0))
        overflow = await asyncio.to_thread(on_a_phone, browser, url, tmp_path)
        assert overflow <= 0, "the page itself never scrolls sideways, only its tables do"
    print(f"screenshots in {tmp_path}")


def flash(browser: WebDriver) -> str:
    """The message of the page the replay form's POST redirects to (a click does not wait
    for the navigation it starts)."""
    found = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".flash"))
    )
    return str(found.text)


def read_and_replay_one(browser: WebDriver, url: str) -> str:
    browser.get(url)
    subscriptions = {row["Subscription"]: row for row in table(browser, "subscriptions")}
    deals = subscriptions["new-deals"]
    assert (deals["State"], deals["Pending"], deals["Delivered"], deals["Dead"]) == (
        "ok", "0", "1", "2",
    )  # fmt: skip
    assert subscriptions["new-activities"]["Delivered"] == "1"
    accounts = table(browser, "accounts")
    assert accounts[0]["Account"] == "main" and int(accounts[0]["Calls today"]) >= 2
    letters = table(browser, "dead-letters")
    assert len(letters) == 2 and {row["Attempts"] for row in letters} == {"2"}
    assert {row["Last error"] for row in letters} == {"callback returned 503 Service Unavailable"}
    deliveries = table(browser, "deliveries")
    assert len(deliveries) == 2 and all(row["Attempts"] == "#1 200" for row in deliveries)
    assert browser.find_element(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')
    # One letter's own button: it is delivered, the other stays dead.
    first = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")[0]
    event_id = first.get_attribute("data-event")
    assert event_id is not None
    first.find_element(By.TAG_NAME, "button").click()
    assert flash(browser) == "1 dead letter queued for delivery again.", browser.current_url
    return event_id


def check_replayed_and_replay_all(
    browser: WebDriver, url: str, event_id: str, tmp_path: Path
) -> None:
    browser.get(url)
    assert len(table(browser, "dead-letters")) == 1
    row = browser.find_element(By.CSS_SELECTOR, f'#deliveries tr[data-event="{event_id}"]')
    attempts = row.find_element(By.CSS_SELECTOR, "td.attempts").text
    assert attempts == "#1 503 #2 503 #1 200", "the letter's two attempts, then the replay's"
    assert "delivered" in row.text
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(DESKTOP[0], int(height) + 20)  # the whole page, no blank below
    screenshot = tmp_path / "admin-page.png"
    browser.save_screenshot(str(screenshot))
    browser.set_window_size(*DESKTOP)
    assert screenshot.stat().st_size > 10_000
    # The subscription's button replays the rest.
    button = browser.find_element(
        By.CSS_SELECTOR, '#subscriptions tr[data-subscription="new-deals"] button'
    )
    assert button.text == "Replay all 1"
    button.click()
    assert flash(browser) == "1 dead letter queued for delivery again."


def on_a_phone(browser: WebDriver, url: str, tmp_path: Path) -> int:
    browser.set_window_size(*PHONE)
    browser.get(url)
    browser.save_screenshot(str(tmp_path / "admin-page-phone.png"))
    return int(
        browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    )
