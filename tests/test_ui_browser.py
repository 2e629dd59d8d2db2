"""`make ui` in a real browser: headless Chromium (Debian's chromium and chromium-driver,
installed by .ci/run) driven by Selenium opens Locust's web UI, starts a swarm against `hold`
from the form, and watches the request counts and the database pool panel move; the panel's
numbers are checked against the server's own accounting and against the CSV the UI offers
for download. Ctrl-C then stops everything `make ui` started."""

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from harness import ROOT
from harness.stack import postgres
from harness.stack.metrics import read_metrics
from tests.support.waiting import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
STREAMS = 8


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "no Chromium here (needs Debian's chromium and chromium-driver: "
            "sudo apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    app_port, web_port = postgres.free_port(), postgres.free_port()
    directory = tmp_path_factory.mktemp("ui")
    log = directory / "make-ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness",
                "ui",
                "--port",
                str(app_port),
                "--web-port",
                str(web_port),
                "--log-dir",
                str(directory / "session"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children = []
    try:
        wait_for(lambda: "Locust:" in log.read_text() or proc.poll() is not None, 90, "make ui starting")
        assert proc.poll() is None, log.read_text()
        children = psutil.Process(proc.pid).children(recursive=True)  # each in a session of its own
        yield proc, f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{web_port}", log
    finally:
        if proc.poll() is None:  # the Ctrl-C test did not run: stop it the same way, then make sure
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def click(browser, element, timeout=10):
    """A real click, once the element is in view and nothing covers it (the form's accordion
    may still be opening, the panel may be over it)."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        try:
            return element.click()
        except StaleElementReferenceException:
            return None  # gone: the page moved on
        except ElementClickInterceptedException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


PANEL_JS = """
    var get = function (id) { return document.getElementById(id).textContent; };
    return {unix_s: document.getElementById('bench-pool-panel').getAttribute('data-unix-s'),
            pool_in_use: get('bench-pool_in_use'), pool_waiting: get('bench-pool_waiting'),
            db_backends: get('bench-db_backends'), users: get('bench-users')};"""


def panel(driver, raw=False):
    """The pool panel's numbers as the page shows them, read in one go."""
    values = driver.execute_script(PANEL_JS)
    if raw:
        return values
    return {k: int(v) if v.isdigit() else None for k, v in values.items() if k != "unix_s"}


def test_a_swarm_started_from_the_form_fills_the_pool_panel(ui, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    proc, app, web, _ = ui
    browser.get(web)
    wait_for(lambda: browser.find_elements(By.ID, "bench-pool-panel"), 20, "the pool panel on the page")
    for name, value in (("userCount", STREAMS + 1), ("spawnRate", STREAMS + 1)):
        field = browser.find_element(By.NAME, name)
        field.send_keys(Keys.CONTROL, "a")  # clear() does not reach React's state
        field.send_keys(Keys.DELETE, str(value))
        assert field.get_attribute("value") == str(value)
    click(browser, browser.find_element(By.XPATH, "//*[text()='Custom parameters']"))
    Select(wait_for(lambda: browser.find_element(By.NAME, "variant"), 5, "the variant dropdown")).select_by_value(
        "hold"
    )
    # Start; the form gives way to the statistics (a click while the accordion still moves can
    # land beside the button: then click again)
    start = "//button[@type='submit' and normalize-space()='Start']"
    deadline = time.monotonic() + 20
    while (buttons := browser.find_elements(By.XPATH, start)) and time.monotonic() < deadline:
        click(browser, buttons[0])
        clicked = time.monotonic()
        while browser.find_elements(By.XPATH, start) and time.monotonic() < clicked + 3:
            time.sleep(0.2)
    assert not browser.find_elements(By.XPATH, start), "the swarm did not start"
    shot = tmp_path / "make-ui.png"
    try:
        check_the_swarm(browser, app, web)
    finally:
        browser.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def check_the_swarm(browser, app, web):
    from selenium.webdriver.common.by import By

    # Locust's own statistics move: the probe's row counts requests
    wait_for(lambda: "/probe/" in browser.find_element(By.TAG_NAME, "body").text, 30, "Locust's statistics table")
    # and the panel shows the pool filling up: streams hold every connection, others wait
    shown = wait_for(
        lambda: (lambda v: v if v["pool_in_use"] and v["pool_waiting"] else None)(panel(browser)),
        30,
        "the pool panel showing connections in use and waiters",
    )
    assert shown["users"] == STREAMS + 1 and shown["db_backends"] >= 1

    # the panel's numbers are the server's: with every stream held, in use stays put
    metrics = read_metrics(app)
    wait_for(
        lambda: panel(browser)["pool_in_use"] == int(metrics["pool_in_use"]) == int(read_metrics(app)["pool_in_use"]),
        10,
        "the panel agreeing with the server's /metrics",
    )
    # and the CSV the UI offers holds the samples the panel draws: one sample, read at once
    snap = panel(browser, raw=True)
    with urllib.request.urlopen(f"{web}/bench/pool.csv", timeout=5) as response:
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    sampled = float(snap.pop("unix_s"))
    row = next(r for r in rows if float(r["unix_s"]) == sampled)
    assert {k: row[k] for k in snap} == snap


def test_ctrl_c_stops_everything_it_started(ui):
    proc, app, web, log = ui
    started = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    assert any("postgres" in p.name() for p in map(psutil.Process, started))
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130, log.read_text()[-2000:]

    def alive():
        return [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]

    wait_for(lambda: not alive(), 10, "what make ui started, gone")  # it may still be on its way out
    assert alive() == []
