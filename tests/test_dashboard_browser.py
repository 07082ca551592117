"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium), on the
seed's first scenario: three servers turn WaitToBeDeleted, a player joins and the row turns None without a reload,
and a bulk Kill from the page removes the chosen servers.

`make browser` installs the browser; without it this test is skipped with a message saying so. Set
GAMEKEEPER_SCREENSHOTS=DIR to save the pages' screenshots there (docs/images holds the README's).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet, ops, seed_yaml, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TOKEN = "browser-test-token"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,900"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver: run `make browser` (apt-get install -y chromium "
    "chromium-driver) as root",
)


def start_browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and DRIVER is not None
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="gk-chromium-")
    for flag in [*CHROME_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.profile_dir = profile
    return driver


def stop_browser(driver: Any) -> None:
    driver.quit()
    shutil.rmtree(driver.profile_dir, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = start_browser()
    try:
        yield driver
    finally:
        stop_browser(driver)


def until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def safe() -> bool:
        try:
            return check()
        except (StaleElementReferenceException, NoSuchElementException):  # re-rendered between find and read
            return False

    wait_for(safe, what, timeout, interval=0.1)


def row_ops(driver: Any) -> dict[str, str]:
    """Each shown row's opsState, read in one script: the page re-renders rows as updates stream in, so reading
    them element by element could meet a row replaced in between (a stale element)."""
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('#gs-rows .row'))"
        ".map(r => [r.getAttribute('data-name'), (r.querySelector('.ops') || {innerText: ''}).innerText.trim()]);"
    )
    return {name: ops for name, ops in pairs}


def click(driver: Any, css: str) -> None:
    """Click, finding the element again if a re-render replaced it between the find and the click."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} kept being replaced")


def shot(driver: Any, name: str) -> None:
    where = os.environ.get("GAMEKEEPER_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(where) / f"{name}.png"))


@pytest.mark.slow
def test_seed_scenario_in_the_dashboard(fleet: Fleet, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    token_file = fleet.tmp / "token"
    token_file.write_text(TOKEN + "\n")
    fleet.apply_yaml(seed_yaml("minecraft.yaml"))
    fleet.start("--api-addr", "127.0.0.1:0", "--api-token-file", str(token_file))
    wait_for(lambda: (fleet.state_dir / "api.json").exists(), "the API to start", 20)
    url = json.loads((fleet.state_dir / "api.json").read_text())["url"]

    browser.get(url + "#/servers")
    browser.find_element(By.ID, "token-open").click()
    browser.find_element(By.ID, "token-input").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    loaded_at = browser.execute_script("return window.gamekeeper.loadedAt")

    until("three rows WaitToBeDeleted", lambda: row_ops(browser) == {
        f"minecraft-{i}": "WaitToBeDeleted" for i in range(3)}, 90)
    until("the stream to be live", lambda: browser.find_element(By.ID, "conn").text == "live", 10)
    shot(browser, "dashboard-servers")

    fleet.gk("exec", "minecraft-1", "--", "./player.sh", "join", "alice")
    until("minecraft-1's row to turn None", lambda: row_ops(browser).get("minecraft-1") == "None", 60)
    assert browser.execute_script("return window.gamekeeper.loadedAt") == loaded_at, "the page was reloaded"
    assert row_ops(browser)["minecraft-0"] == "WaitToBeDeleted"

    for name in ("minecraft-0", "minecraft-2"):
        click(browser, f'.row[data-name="{name}"] input[type=checkbox]')
    until("two selected", lambda: browser.find_element(By.ID, "sel-count").text == "2 selected", 5)
    browser.find_element(By.ID, "act-kill").click()
    until("the confirmation", lambda: browser.find_element(By.ID, "confirm").get_attribute("open") is not None, 5)
    lines = browser.find_element(By.ID, "confirm-list").text
    assert "default/minecraft-0: opsState WaitToBeDeleted → Kill" in lines
    assert "default/minecraft-2" in lines and "minecraft-1" not in lines
    assert '{"spec":{"opsState":"Kill"}}' in browser.find_element(By.ID, "confirm-text").text
    shot(browser, "dashboard-confirm")
    browser.find_element(By.ID, "confirm-ok").click()
    until("the killed rows to go", lambda: sorted(row_ops(browser)) == ["minecraft-1"], 60)
    assert "minecraft-0: patched" in browser.find_element(By.ID, "result").text
    assert browser.execute_script("return window.gamekeeper.loadedAt") == loaded_at
    assert sorted(fleet.gameservers()) == ["minecraft-1"] and ops(fleet.gameservers()["minecraft-1"]) == "None"

    # The overview and the game server's page, with its timeline chart.
    browser.get(url + "#/")
    until("the set's card", lambda: "1 wanted" in browser.find_element(By.CSS_SELECTOR, '[data-set="minecraft"]').text,
          30)
    shot(browser, "dashboard-overview")
    # Scale from the overview, typing while the stream keeps redrawing the cards.
    replicas = browser.find_element(By.CSS_SELECTOR, '[data-scale="default/minecraft"]')
    replicas.send_keys(Keys.CONTROL, "a", Keys.NULL, "2")  # NULL releases Ctrl before the digit
    browser.find_element(By.CSS_SELECTOR, '[data-scale-go="default/minecraft"]').click()
    until("the scale confirmation", lambda: browser.find_element(By.ID, "confirm").get_attribute("open") is not None, 5)
    assert "goes from 1 to 2" in browser.find_element(By.ID, "confirm-text").text
    browser.find_element(By.ID, "confirm-ok").click()
    until("scaled", lambda: "minecraft scaled to 2" in browser.find_element(By.ID, "result").text, 10)
    assert json.loads(fleet.gk("get", "gss", "minecraft", "-o", "json").stdout)["spec"]["replicas"] == 2
    until("the card to follow", lambda: "2 wanted" in browser.find_element(By.CSS_SELECTOR,
                                                                          '[data-set="minecraft"]').text, 30)
    browser.get(url + "#/gs/default/minecraft-1")
    until("the timeline", lambda: len(browser.find_elements(By.CSS_SELECTOR, "#timeline svg rect")) >= 3, 20)
    label = browser.find_element(By.ID, "timeline").get_attribute("aria-label")
    assert "probe idle: idle then active" in label and "WaitToBeDeleted then None" in label.split("opsState:")[1]
    until("the log tail", lambda: browser.find_element(By.ID, "gs-log").text != "", 10)
    shot(browser, "dashboard-gameserver")


@pytest.mark.slow
def test_warning_feed_filter_sort_and_keyboard(fleet: Fleet, browser: Any) -> None:
    """The seed's second scenario: a fault turns demo-gs-0 Maintaining and its Warning appears in the feed live;
    the table filters, sorts, and is driven by the keyboard alone."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    fleet.apply_yaml(seed_yaml("demo-gs.yaml"))
    fleet.start("--api-addr", "127.0.0.1:0")
    wait_for(lambda: (fleet.state_dir / "api.json").exists(), "the API to start", 20)
    url = json.loads((fleet.state_dir / "api.json").read_text())["url"]
    browser.get(url + "#/servers")
    loaded_at = browser.execute_script("return window.gamekeeper.loadedAt")
    until("three rows None", lambda: row_ops(browser) == {f"demo-gs-{i}": "None" for i in range(3)}, 90)

    fleet.gk("exec", "demo-gs-0", "--", "./fault.sh")
    until("the Warning in the feed", lambda: "OpsState turn from None to Maintaining" in browser.find_element(
        By.ID, "warnings").text, 60)
    assert "demo-gs-0" in browser.find_element(By.ID, "warnings").text
    # The row follows the GameServer's own update, which may reach the page just after the Warning.
    until("demo-gs-0's row to turn Maintaining", lambda: row_ops(browser).get("demo-gs-0") == "Maintaining", 30)
    assert browser.execute_script("return window.gamekeeper.loadedAt") == loaded_at

    names = lambda: [r.get_attribute("data-name")  # noqa: E731 - read again after each re-render
                     for r in browser.find_elements(By.CSS_SELECTOR, "#gs-rows .row")]
    browser.find_element(By.CSS_SELECTOR, '.thead button[data-sort="name"]').click()  # already by name: reverse
    until("descending names", lambda: names() == ["demo-gs-2", "demo-gs-1", "demo-gs-0"], 5)
    browser.find_element(By.ID, "filter").send_keys("maintain")
    until("only the Maintaining row", lambda: names() == ["demo-gs-0"], 5)
    browser.find_element(By.ID, "filter").send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)  # as a user clears it
    until("all rows again", lambda: len(names()) == 3, 5)
    shot(browser, "dashboard-warnings")

    grid = browser.find_element(By.ID, "gs-scroll")
    grid.send_keys(Keys.HOME, Keys.ARROW_DOWN, Keys.SPACE)
    until("the second row selected", lambda: browser.find_element(By.ID, "sel-count").text == "1 selected", 5)
    assert browser.find_element(By.CSS_SELECTOR, '.row[data-name="demo-gs-1"]').get_attribute(
        "aria-selected") == "true"
    # Read-only (no token): the page reports the refusal instead of changing anything.
    browser.find_element(By.ID, "act-kill").click()
    until("the confirmation", lambda: browser.find_element(By.ID, "confirm").get_attribute("open") is not None, 5)
    browser.find_element(By.ID, "confirm-ok").click()
    until("the refusal", lambda: "403" in browser.find_element(By.ID, "result").text, 10)
    assert ops(fleet.gameservers()["demo-gs-1"]) == "None"
    grid.send_keys(Keys.ENTER)
    until("the game server's page", lambda: browser.execute_script("return location.hash") ==
          "#/gs/default/demo-gs-1", 5)
