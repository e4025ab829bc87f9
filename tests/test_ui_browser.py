"""vex ui in a real browser: Debian's headless Chromium, driven by Selenium (chromium-driver).

Over a 100,000-record .vmig.jsonl written once per session: each view loads, the overview's
numbers equal ``inspect``'s, a point of the map opens its record, a search finds records, the
runs view shows the diff against a changed copy, and a server beyond loopback refuses the
browser without the token. Screenshots are kept in $VEXTEST_ARTIFACTS (else a temp folder the
test prints). Needs ``apt-get install -y chromium chromium-driver`` and ``pip install selenium``;
skipped without them, failed under CI.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import vexchange
from vexchange.connectors.vmig import VmigWriter
from vexchange.testing.records import sample_records
from vexchange.ui import UIServer, serve

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")
RECORDS = 100_000


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMIUM, DRIVER):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install -y chromium chromium-driver)"
    return None


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("VEXTEST_ARTIFACTS") or tmp_path_factory.mktemp("ui-artifacts"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nvex ui screenshots: {where}")
    return where


@pytest.fixture(scope="session")
def fixture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ui-browser") / "memory.vmig.jsonl"
    writer = VmigWriter(path, resume=None, dry_run=False, spaces={})
    records = sample_records(RECORDS, dims=32)
    while batch := list(itertools.islice(records, 5000)):
        writer.write(batch)
    writer.finish({"source": {"connector": "test"}})
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    why = _missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="vex-ui-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def ui(fixture_file: Path) -> Iterator[UIServer]:
    server = serve(fixture_file, no_open=True, block=False, announce=lambda line: None)
    assert server.wait_ready(300)
    yield server
    server.stop()


def _open(driver: Any, url: str, ready: str, timeout: float = 60) -> None:
    """Load a view and wait until it has rendered (``data-loaded``) and ``ready`` is present."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.getElementById('view').dataset.loaded") == "true"
        and d.find_elements(By.CSS_SELECTOR, ready))
    errors = driver.find_element(By.ID, "error")
    assert not errors.is_displayed(), errors.text


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_overview_equals_inspect(browser: Any, ui: UIServer, fixture_file: Path, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    report = msgspec.to_builtins(vexchange.inspect(fixture_file))
    _open(browser, ui.url + "#overview", "#ov-records")
    browser.save_screenshot(str(artifacts / "overview.png"))
    shown = {name: _number(browser.find_element(By.ID, f"ov-{name.replace('_', '-')}").text)
             for name in ("records", "with_vector", "without_vector", "with_text", "without_text")}
    assert shown == {name: report[name] for name in shown}
    assert browser.find_element(By.ID, "ov-created-from").text == report["created_from"]
    assert browser.find_element(By.ID, "ov-created-to").text == report["created_to"]
    for table, key in (("ov-namespaces", "namespaces"), ("ov-models", "models"), ("ov-dims", "dims")):
        rows = browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")
        got = {row.get_attribute("data-key"): _number(row.find_elements(By.TAG_NAME, "td")[1].text)
               for row in rows}
        assert got == report[key]
    assert "ok" in browser.find_element(By.ID, "ov-sidecar").text
    note = browser.find_element(By.ID, "sample-note")
    assert note.is_displayed() and "50,000 of 100,000" in note.text  # the page says it is a sample


def test_map_point_opens_its_record(browser: Any, ui: UIServer, artifacts: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, ui.url + "#map", "#map-canvas[data-drawn]", timeout=120)
    canvas = browser.find_element(By.ID, "map-canvas")
    assert canvas.get_attribute("data-drawn") == "50000"
    browser.save_screenshot(str(artifacts / "map.png"))
    # the first point's place on the canvas, from the data the page drew
    dx, dy = browser.execute_script(
        "const m = state.map, c = document.getElementById('map-canvas'), r = c.getBoundingClientRect();"
        "const s = r.width / c.width;"
        "return [(10 + m.xy[0] * (c.width - 20) - c.width / 2) * s,"
        " (10 + (1 - m.xy[1]) * (c.height - 20) - c.height / 2) * s];")
    ActionChains(browser).move_to_element_with_offset(canvas, int(dx), int(dy)).perform()
    tip = browser.find_element(By.ID, "tooltip")
    WebDriverWait(browser, 10).until(lambda d: tip.is_displayed() and tip.text)
    browser.save_screenshot(str(artifacts / "map-hover.png"))
    ActionChains(browser).click().perform()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "record-id"))
    assert browser.current_url.split("#", 1)[1].startswith("record?i=")
    _open(browser, browser.current_url, "#record-id")
    point = ui.inspector.point(int(browser.current_url.split("i=")[1]))
    assert browser.find_element(By.ID, "record-id").text == point["key"][1]
    browser.save_screenshot(str(artifacts / "record.png"))


def test_search_and_nearest(browser: Any, ui: UIServer, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    target = ui.inspector.scan.sample[0] if ui.inspector.scan else None
    assert target is not None and target.text
    number = target.text.split(":")[0]  # "memory 12345": that number is in this record's text only
    _open(browser, ui.url + "#search", "#search-form")
    box = browser.find_element(By.ID, "search-q")
    box.clear()
    box.send_keys(number)
    browser.find_element(By.ID, "search-go").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#search-table tr.hit"))
    hits = browser.find_elements(By.CSS_SELECTOR, "#search-table tr.hit")
    assert hits and target.id in hits[0].text
    browser.save_screenshot(str(artifacts / "search.png"))
    hits[0].find_element(By.CSS_SELECTOR, "a.record-link").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "record-id"))
    _open(browser, browser.current_url, "#record-id")
    assert browser.find_element(By.ID, "record-id").text == target.id
    metadata = {row.get_attribute("data-key"): row.text for row in
                browser.find_elements(By.CSS_SELECTOR, "#record-metadata tbody tr")}
    assert metadata["n"].split()[-1] == str((target.metadata or {})["n"])
    browser.find_element(By.ID, "record-nearest").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#search-table tr.hit"))
    first = browser.find_elements(By.CSS_SELECTOR, "#search-table tr.hit")[0]
    cells = first.find_elements(By.TAG_NAME, "td")
    assert cells[3].text == target.id and float(cells[1].text) == pytest.approx(1.0, abs=1e-3)  # itself
    browser.save_screenshot(str(artifacts / "nearest.png"))


def test_runs_view_shows_the_diff(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    records = list(sample_records(500, dims=32))
    source, copy = tmp_path / "source.vmig.jsonl", tmp_path / "copy.vmig.jsonl"
    for path, items in ((source, records), (copy, records[:100] + records[101:400])):
        writer = VmigWriter(path, resume=None, dry_run=False, spaces={})
        writer.write(items)
        writer.finish({"source": {"connector": "test"}})
    vexchange.migrate(copy, tmp_path / "again.vmig.jsonl")
    server = serve(tmp_path / "again.vmig.jsonl", against=source, no_open=True, block=False,
                   announce=lambda line: None)
    try:
        server.wait_ready(60)
        for _ in range(300):
            if server.inspector.diff_state != "running":
                break
            server.wait_ready(0.1)
        _open(browser, server.url + "#runs", "#diff-ok")
        assert browser.find_element(By.ID, "diff-missing").text == "101"
        assert browser.find_element(By.ID, "diff-matched").text == "399"
        assert browser.find_elements(By.CSS_SELECTOR, ".run .run-counts")
        browser.save_screenshot(str(artifacts / "runs.png"))
        first = browser.find_element(By.CSS_SELECTOR, ".id-list a")
        assert first.text == records[100].id  # the first id missing from the copy
        first.click()
        _open(browser, browser.current_url, "#record-id")
        assert browser.find_element(By.ID, "record-id").text == records[100].id
        assert "--against" in browser.find_element(By.ID, "record").text
    finally:
        server.stop()


def test_beyond_loopback_the_browser_needs_the_token(browser: Any, fixture_file: Path,
                                                     artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    server = serve(fixture_file, host="0.0.0.0", no_open=True, block=False, announce=lambda line: None,
                   sample=1000)
    try:
        local = server.url.replace("0.0.0.0", "127.0.0.1")
        browser.delete_all_cookies()
        browser.get(local)
        assert "a token is required" in browser.find_element(By.TAG_NAME, "body").text
        browser.save_screenshot(str(artifacts / "refused.png"))
        assert server.token is not None
        browser.get(local + "?token=" + server.token)  # the one-time URL sets the session cookie
        assert server.wait_ready(300)
        _open(browser, local + "#overview", "#ov-records", timeout=120)
        browser.get(local + "?token=" + server.token)
        assert "used already" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        browser.delete_all_cookies()
        server.stop()
