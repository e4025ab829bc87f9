"""vex ui over a 1M-record .vmig.jsonl: the scan, then how fast the page is (issue 23).

    python bench/ui.py                      # 1,000,000 records of 64 dims (~1.3 GB on disk)
    python bench/ui.py --records 100000     # a quick run

Measured, in headless Debian Chromium driven by Selenium (as tests/test_ui_browser.py):

* ``scan``: the server's one streamed pass (``inspect`` with its tee), from start to ready;
* ``overview after the scan``: from the scan's end, a fresh page load until the overview has
  rendered (navigation start to the view's ``data-loaded``, in the page's own clock), and the
  /api/overview request alone;
* ``map``: loading the map view (projection of the 50,000-vector sample, its transfer and the
  canvas drawing), first time (PCA computed) and again (cached);
* ``responsiveness``: while the pointer sweeps over the 50,000 points for two seconds, the
  longest gap between two animation frames and the longest task the page ran (the page stays
  responsive when both stay well under 100 ms).

The fixture file is written once (untimed) and kept under --dir.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path

from vexchange.connectors.vmig import VmigWriter
from vexchange.testing.records import sample_records
from vexchange.ui import serve

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")


def fixture(path: Path, records: int, dims: int) -> Path:
    if path.exists() and path.with_name(path.name.replace(".jsonl", ".meta.json")).exists():
        return path
    writer = VmigWriter(path, resume=None, dry_run=False, spaces={})
    it = sample_records(records, dims=dims)
    while batch := list(itertools.islice(it, 10_000)):
        writer.write(batch)
    writer.finish({"source": {"connector": "bench"}})
    return path


def browser() -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='vex-ui-bench-')}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def loaded_ms(driver: object, url: str, ready: str) -> float:
    """Navigation start to the view's data-loaded, in the page's own clock."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")  # type: ignore[attr-defined]
    driver.get(url)  # type: ignore[attr-defined]
    WebDriverWait(driver, 300).until(
        lambda d: d.execute_script("return document.getElementById('view').dataset.loaded") == "true")
    if not driver.find_elements(By.CSS_SELECTOR, ready):  # type: ignore[attr-defined]
        error = driver.find_element(By.ID, "error").text  # type: ignore[attr-defined]
        raise SystemExit(f"{url}: the view did not render: {error}")
    return float(driver.execute_script(  # type: ignore[attr-defined]
        "return window.__loadedAt || performance.now()"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--dir", default="/tmp/vex-bench-ui")
    args = parser.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    path = fixture(root / f"ui-{args.records}.vmig.jsonl", args.records, args.dims)
    out: dict[str, object] = {"records": args.records, "dims": args.dims,
                              "file_mb": round(path.stat().st_size / 1e6, 1), "cpus": os.cpu_count()}
    started = time.monotonic()
    ui = serve(path, no_open=True, block=False, announce=lambda line: None)
    driver = browser()
    try:
        ui.wait_ready()
        out["scan_s"] = round(time.monotonic() - started, 2)
        t = time.monotonic()
        with urllib.request.urlopen(ui.url + "api/overview") as response:
            response.read()
        out["api_overview_ms"] = round((time.monotonic() - t) * 1000, 1)
        out["overview_page_ms"] = round(loaded_ms(driver, ui.url + "#overview", "#ov-records"), 1)
        out["map_first_ms"] = round(loaded_ms(driver, ui.url + "#map", "#map-canvas[data-drawn]"), 1)
        out["map_again_ms"] = round(loaded_ms(driver, ui.url + "#map", "#map-canvas[data-drawn]"), 1)
        out.update(sweep(driver))
    finally:
        driver.quit()  # type: ignore[attr-defined]
        ui.stop()
    print(json.dumps(out, indent=2))


def sweep(driver: object) -> dict[str, float]:
    """The pointer sweeps the map for about two seconds; the page's longest frame gap and task."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.execute_script(  # type: ignore[attr-defined]
        "window.__gaps = []; window.__tasks = [];"
        "let last = performance.now(); const tick = (t) => { __gaps.push(t - last); last = t;"
        " if (__gaps.length < 100000) requestAnimationFrame(tick); }; requestAnimationFrame(tick);"
        "try { new PerformanceObserver((l) => l.getEntries().forEach((e) => __tasks.push(e.duration)))"
        ".observe({ type: 'longtask', buffered: false }); } catch (e) {}")
    canvas = driver.find_element(By.ID, "map-canvas")  # type: ignore[attr-defined]
    chain = ActionChains(driver, duration=10)
    for step in range(200):
        x = int((step % 40) * 22 - 430)
        y = int((step // 40) * 100 - 250)
        chain.move_to_element_with_offset(canvas, x, y)
    started = time.monotonic()
    chain.perform()
    took = time.monotonic() - started
    gaps = driver.execute_script("return window.__gaps")  # type: ignore[attr-defined]
    tasks = driver.execute_script("return window.__tasks")  # type: ignore[attr-defined]
    gaps = gaps[2:] or [0.0]
    return {"sweep_moves": 200, "sweep_s": round(took, 2), "frame_gap_max_ms": round(max(gaps), 1),
            "frame_gap_p95_ms": round(sorted(gaps)[int(len(gaps) * 0.95)], 1),
            "long_tasks": len(tasks), "long_task_max_ms": round(max(tasks or [0.0]), 1)}


if __name__ == "__main__":
    main()
