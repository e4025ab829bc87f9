"""vex ui's JSON endpoints over small real files (the browser tests are tests/test_ui_browser.py).

Every number the overview shows is the library's ``inspect``; the diff is ``verify``'s; values
reach the page exactly (as JSON text); the guard refuses what it should.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import vexchange
from vexchange.connectors.vmig import VmigWriter
from vexchange.record import MemoryRecord, Vector
from vexchange.testing.records import sample_records
from vexchange.ui import UIServer, serve


def write(path: Path, records: Iterator[MemoryRecord] | list[MemoryRecord]) -> Path:
    writer = VmigWriter(path, resume=None, dry_run=False, spaces={})
    it = iter(records)
    while batch := list(itertools.islice(it, 1000)):
        writer.write(batch)
    writer.finish({"source": {"connector": "test"}})
    return path


def get(ui: UIServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(ui.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def started() -> Iterator[list[UIServer]]:
    servers: list[UIServer] = []
    yield servers
    for ui in servers:
        ui.stop()


def start(started: list[UIServer], location: Any, **options: Any) -> UIServer:
    ui = serve(location, no_open=True, block=False, announce=lambda line: None, **options)
    started.append(ui)
    assert ui.wait_ready(60)
    return ui


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return write(tmp_path / "small.vmig.jsonl", sample_records(300, dims=8))


def test_overview_is_inspect(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small)
    status, overview = get(ui, "/api/overview")
    assert status == 200
    assert overview["inspect"] == msgspec.to_builtins(vexchange.inspect(small))
    assert overview["sample"] == {"size": 300, "records": 300, "sampled": False, "limit": 50_000}
    bins = overview["histogram"]["bins"]
    with_time = sum(1 for r in sample_records(300, dims=8) if r.created_at is not None)
    assert sum(b["count"] for b in bins) == with_time and 0 < len(bins) <= 60


def test_a_sample_says_so(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small, sample=50)
    _, overview = get(ui, "/api/overview")
    assert overview["inspect"]["records"] == 300  # counted whole
    assert overview["sample"]["sampled"] is True and overview["sample"]["size"] == 50
    _, again = get(start(started, small, sample=50), "/api/overview")
    assert again["sample"] == overview["sample"]  # seeded: the same store gives the same sample
    _, mapped = get(ui, "/api/map")
    assert mapped["points"] <= 50 and mapped["sample"]["sampled"] is True


def test_map_pca_and_colours(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small)
    _, first = get(ui, "/api/map?colour=meta.tag")
    assert first["method"] == "pca" and first["dims"] == 8
    assert first["points"] == 299  # one record has no vector
    assert len(first["xy"]) == 2 * first["points"] and all(0 <= v <= 1 for v in first["xy"])
    labels = {c["label"] for c in first["colour"]["categories"]}
    assert {"x", "y"} <= labels
    assert "meta.tag" in first["colour_keys"] and "namespace" in first["colour_keys"]
    _, second = get(start(started, small), "/api/map?colour=meta.tag")
    assert second["xy"] == first["xy"]  # deterministic
    status, _ = get(ui, "/api/map?method=tsne")
    assert status == 400
    _, point = get(ui, f"/api/point?i={first['rows'][0]}")
    assert point["key"][1] and "text" in point


def test_record_view_is_exact(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small)
    edge = list(sample_records(300, dims=8))[1]
    status, view = get(ui, "/api/record?key=" + urllib.request.quote(json.dumps([edge.namespace, edge.id])))
    assert status == 200
    assert view["fields"]["id"] == edge.id and view["in_sample"] is True
    meta = {m["key"]: (m["type"], m["value"]) for m in view["metadata"]}
    assert meta["huge"] == ("int", str(2**70))  # beyond a JavaScript number: sent as text
    assert meta["big"] == ("int", str(2**53 + 1))
    assert meta["whole_float"] == ("float", "2.0") and meta["neg_zero"] == ("float", "-0.0")
    assert meta["t"] == ("bool", "true") and meta["null"] == ("null", "null")
    assert meta["nested"][0] == "object" and meta["tags"][0] == "list"
    vec = view["vectors"][0]
    assert vec["dims"] == 8 and vec["head"] == [str(v) for v in edge.vectors[""].array()]
    assert json.loads(view["line"])["id"] == edge.id
    assert view["lineage"]["sidecar"]["source_store"] == "test"
    status, _ = get(ui, "/api/record?key=" + urllib.request.quote(json.dumps([None, "no-such-id"])))
    assert status == 400
    status, _ = get(ui, "/api/record?key=not-json")
    assert status == 400


def test_record_outside_the_sample_is_read_from_the_store(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small, sample=10)
    held = {tuple(p) for p in (get(ui, f"/api/point?i={i}")[1]["key"] for i in range(10))}
    outside = next(r for r in sample_records(300, dims=8) if (r.namespace, r.id) not in held)
    _, view = get(ui, "/api/record?key=" + urllib.request.quote(json.dumps([outside.namespace, outside.id])))
    assert view["fields"]["id"] == outside.id and view["in_sample"] is False


def test_keyword_and_nearest_search(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small)
    _, hits = get(ui, "/api/search?mode=keyword&q=emoji")
    assert [h["key"][1] for h in hits["hits"]] == ["ünï-cødé ✓ 🚀"]
    _, hits = get(ui, "/api/search?mode=keyword&q=memory+17&k=5")
    assert hits["hits"][0]["text"].startswith("memory 17:") and len(hits["hits"]) == 5
    scores = [h["score"] for h in hits["hits"]]
    assert scores == sorted(scores, reverse=True)
    _, near = get(ui, "/api/search?mode=record&i=0&k=3")
    assert near["hits"][0]["i"] == 0 and near["hits"][0]["similarity"] == pytest.approx(1.0)
    status, body = get(ui, "/api/search?mode=keyword&q=")
    assert status == 400 and "word" in body["error"]


def test_typed_text_search_with_the_static_embedder(tmp_path: Path, started: list[UIServer]) -> None:
    pytest.importorskip("static_model")
    from vexchange.embed import get_embedder

    texts = ["the cat sat on the mat", "stock markets fell sharply today", "a recipe for tomato soup",
             "the dog chased the cat", "quarterly earnings beat expectations"]
    embedder = get_embedder("static")
    vectors = embedder.embed(texts)
    records = [MemoryRecord(id=f"r{i}", text=t,
                            vectors={"": Vector(v.astype("<f4").tobytes(), embedder.model)})
               for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]
    ui = start(started, write(tmp_path / "embedded.vmig.jsonl", records))
    _, found = get(ui, "/api/search?mode=text&q=" + urllib.request.quote("tomato soup recipe") + "&k=2")
    assert found["hits"][0]["key"][1] == "r2"  # the embedder is found from the vectors' model
    assert "static" in found["embedders"]


def test_typed_text_search_refuses_other_sizes(small: Path, started: list[UIServer]) -> None:
    pytest.importorskip("static_model")
    ui = start(started, small)
    status, body = get(ui, "/api/search?mode=text&q=hello&embedder=static")
    assert status == 400 and "64-dim" in body["error"] and "8-dim" in body["error"]


def test_runs_show_receipts_and_rejects(tmp_path: Path, started: list[UIServer]) -> None:
    source = write(tmp_path / "src.vmig.jsonl", sample_records(40, dims=8))
    with source.open("ab") as fh:  # two lines a run must refuse, each kept whole in the rejects file
        fh.write(b'{"id": "bad-1", "vector": [1, "x"]}\n{"id": "bad-2", "vector": []}\n')
    (tmp_path / "src.vmig.meta.json").unlink()
    target = tmp_path / "dst.vmig.jsonl"
    receipt = vexchange.migrate(source, target, allow_skips=True)
    assert receipt.counts.skipped_total == 2
    ui = start(started, target)
    _, runs = get(ui, "/api/runs")
    (run,) = runs["runs"]
    assert run["receipt"]["counts"]["written"] == receipt.counts.written
    assert run["rejects"]["lines"] == 2
    assert run["rejects"]["by_reason"] == receipt.counts.skipped
    _, rows = get(ui, "/api/rejects?run=0")
    assert {r["id"] for r in rows["rows"]} == {"bad-1", "bad-2"}
    assert all(r["record"] for r in rows["rows"])
    reason = next(iter(receipt.counts.skipped))
    _, some = get(ui, "/api/rejects?run=0&reason=" + urllib.request.quote(reason))
    assert some["total"] == receipt.counts.skipped[reason]
    _, none = get(ui, "/api/rejects?run=7")
    assert none["rows"] == []


def test_a_receipt_as_the_location(tmp_path: Path, started: list[UIServer]) -> None:
    source = write(tmp_path / "src.vmig.jsonl", sample_records(10, dims=8))
    target = tmp_path / "dst.vmig.jsonl"
    vexchange.migrate(source, target)
    ui = start(started, str(target) + ".receipt.json")
    _, status = get(ui, "/api/status")
    assert status["scan"] is None
    _, runs = get(ui, "/api/runs")
    assert runs["runs"][0]["receipt"]["status"] == "completed"
    code, _ = get(ui, "/api/overview")
    assert code == 400


def test_against_shows_verify_and_field_diffs(tmp_path: Path, started: list[UIServer]) -> None:
    records = list(sample_records(60, dims=8))
    source = write(tmp_path / "source.vmig.jsonl", records)
    changed = records[10].replace(metadata={**(records[10].metadata or {}), "n": 10.0, "added": "yes"})
    copy = [r for i, r in enumerate(records) if i != 20]
    copy[10] = changed
    copy.append(MemoryRecord(id="only-here", text="extra", vectors={"": Vector.from_values([1.0] * 8)}))
    target = write(tmp_path / "copy.vmig.jsonl", copy)
    ui = start(started, target, against=source)
    for _ in range(300):
        _, diff = get(ui, "/api/diff")
        if diff["state"] != "running":
            break
        ui.wait_ready(0.1)
    assert diff["state"] == "ready", diff
    expected = msgspec.to_builtins(vexchange.verify(target, against=source))
    assert diff["report"] == expected
    check = diff["report"]["checks"][-1]
    assert (check["missing"], check["changed"], check["extra"]) == (1, 1, 1)
    (change,) = diff["changes"]
    fields = {f["field"]: f for f in change["fields"]}
    assert fields["metadata.n"]["left"] == "10" and fields["metadata.n"]["right"] == "10.0"
    assert fields["metadata.n"]["left_type"] == "int" and fields["metadata.n"]["right_type"] == "float"
    assert fields["metadata.added"]["left"] is None and fields["metadata.added"]["right"] == '"yes"'
    missing = records[20]
    _, view = get(ui, "/api/record?side=against&key=" + urllib.request.quote(json.dumps([missing.namespace,
                                                                                        missing.id])))
    assert view["fields"]["id"] == missing.id and view["side"] == "against"


def test_cartridge_search_is_vex_search(tmp_path: Path, started: list[UIServer]) -> None:
    source = write(tmp_path / "src.vmig.jsonl", sample_records(50, dims=8, namespaces=False))
    cartridge = tmp_path / "mem.cartridge"
    vexchange.migrate(source, cartridge)
    ui = start(started, cartridge)
    _, found = get(ui, "/api/search?mode=keyword&q=memory+7&k=3")
    from vexchange.pack.search import search

    want = search(cartridge, keyword="memory 7", k=3)
    assert found["pack"] is True
    got = [(h["key"][1], h["score"], h["elo"]) for h in found["hits"]]
    assert got == [(h.id, h.score, h.elo) for h in want]


def test_loopback_refuses_a_foreign_host_header(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small)
    assert ui.token is None and ui.url.startswith("http://127.0.0.1:")
    assert get(ui, "/api/status")[0] == 200
    status, body = get(ui, "/api/status", {"Host": "evil.example:80"})
    assert status == 403 and "loopback" in body["error"]


def test_beyond_loopback_only_with_the_token(small: Path, started: list[UIServer]) -> None:
    told: list[str] = []
    ui = serve(small, host="0.0.0.0", no_open=True, block=False, announce=told.append)
    started.append(ui)
    assert ui.token and any(ui.token in line for line in told)
    local = ui.url.replace("0.0.0.0", "127.0.0.1").rstrip("/")

    def fetch(path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(urllib.request.Request(local + path, headers=headers or {}), timeout=30) as r:
                return r.status, dict(r.headers)
        except urllib.error.HTTPError as err:
            with err:
                return err.code, dict(err.headers)

    assert fetch("/api/status")[0] == 401
    assert fetch("/")[0] == 401
    assert fetch("/api/status", {"X-Vex-Token": "wrong"})[0] == 401
    assert fetch("/api/status", {"X-Vex-Token": ui.token})[0] == 200
    assert fetch("/?token=wrong")[0] == 401
    status, headers = fetch(f"/?token={ui.token}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert ui.token not in cookie and "HttpOnly" in headers["Set-Cookie"]
    assert fetch("/api/status", {"Cookie": cookie})[0] == 200
    assert fetch(f"/?token={ui.token}")[0] == 401  # one-time: the URL opens nothing twice
    assert fetch("/api/status", {"Cookie": "vex_ui_session=guess"})[0] == 401


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_no_endpoint_names_a_file(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small)
    for path in ("/static/../__init__.py", "/static/app.js/../../_server.py", "/etc/passwd",
                 "/api/runs?file=/etc/passwd", "/static/%2e%2e/_scan.py"):
        status, _ = _raw(ui, path)
        assert status == 404 or b"import" not in _, path
    status, body = _raw(ui, "/static/app.js")
    assert status == 200 and b"vex ui" in body
    assert _post(ui) == 405


def _raw(ui: UIServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(ui.url.rstrip("/") + path, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def _post(ui: UIServer) -> int:
    try:
        request = urllib.request.Request(ui.url + "api/status", data=b"{}")
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        with err:
            return err.code


def test_cli_help() -> None:
    from click.testing import CliRunner

    from vexchange.cli import cli

    result = CliRunner().invoke(cli, ["ui", "--help"])
    assert result.exit_code == 0
    for option in ("--against", "--no-open", "--port", "--host"):
        assert option in result.output


def test_a_vectorpack_shows_its_manifest_check(tmp_path: Path, started: list[UIServer]) -> None:
    source = write(tmp_path / "src.vmig.jsonl", sample_records(30, dims=8, namespaces=False))
    pack = tmp_path / "mem.vpack"
    vexchange.migrate(source, pack)
    ui = start(started, pack)
    _, overview = get(ui, "/api/overview")
    assert overview["inspect"] == msgspec.to_builtins(vexchange.inspect(pack))
    assert overview["checks"]["manifest"]["ok"] is True
    assert overview["checks"]["read_checks"] == ["layout and hashes", "content ids"]
    _, found = get(ui, "/api/search?mode=record&i=0&k=1")
    assert found["pack"] is True and found["hits"][0]["similarity"] == pytest.approx(1.0)


def test_a_cartridge_names_the_checks_its_read_made(tmp_path: Path, started: list[UIServer]) -> None:
    source = write(tmp_path / "src.vmig.jsonl", sample_records(20, dims=8, namespaces=False))
    cartridge = tmp_path / "mem.cartridge"
    vexchange.migrate(source, cartridge)
    _, overview = get(start(started, cartridge), "/api/overview")
    assert overview["checks"] == {"read_checks": ["content ids"], "manifest": None,
                                  "bytes": cartridge.stat().st_size, "unverified": None}


def test_a_record_by_id_alone(small: Path, started: list[UIServer]) -> None:
    ui = start(started, small, sample=5)
    _, view = get(ui, "/api/record?id=mem-000200")
    assert view["fields"]["id"] == "mem-000200"


def test_an_unreadable_location_is_an_error_not_a_page(tmp_path: Path) -> None:
    with pytest.raises(vexchange.errors.UsageError, match="no such file"):
        serve(tmp_path / "absent.vmig.jsonl", no_open=True, block=False, announce=lambda line: None)


def _default_sigint() -> None:
    """In the child, before Python starts: SIGINT as a terminal gives it. A job started in the
    background by a shell without job control (``cmd &`` in a script, a CI runner) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_delivered_to_another_thread_still_stops_the_server(small: Path) -> None:
    """The kernel may hand a process's SIGINT to any of its threads; Python raises
    KeyboardInterrupt only in the main thread, so a main thread blocked without a timeout
    would serve forever."""
    import subprocess
    import sys

    script = (
        "import signal, sys, threading, time\n"
        "import vexchange.ui as ui\n"
        "def interrupt():\n"
        "    time.sleep(1.0)\n"
        "    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # this thread, not the main one\n"
        "threading.Thread(target=interrupt).start()\n"
        "ui.serve(sys.argv[1], no_open=True, announce=lambda line: None)\n"
        "print('stopped')\n")
    done = subprocess.run([sys.executable, "-c", script, str(small)], capture_output=True, text=True,
                          timeout=60, preexec_fn=_default_sigint)
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr


def test_vex_ui_serves_until_interrupted(small: Path) -> None:
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "vexchange", "ui", str(small), "--no-open"],
                             stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        assert "vex ui: serving" in line and "http://127.0.0.1:" in line
        url = line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(url + "api/status", timeout=30) as response:
            assert json.loads(response.read())["store"]["connector"] == "vmig"
        child.send_signal(signal.SIGINT)
        assert child.wait(30) == 0
        assert "Traceback" not in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()


def test_umap_only_where_installed(small: Path, started: list[UIServer]) -> None:
    import importlib.util

    ui = start(started, small)
    _, mapped = get(ui, "/api/map")
    if importlib.util.find_spec("umap") is None:
        assert mapped["methods"] == ["pca"]
        assert get(ui, "/api/map?method=umap")[0] == 400
    else:
        _, projected = get(ui, "/api/map?method=umap")
        assert projected["method"] == "umap" and len(projected["xy"]) == 2 * projected["points"]


def test_a_file_that_fails_its_checksum_is_shown_as_read_and_said_so(small: Path,
                                                                      started: list[UIServer]) -> None:
    with small.open("ab") as fh:  # changed after it was written: the sidecar's checksum no longer holds
        fh.write(b'{"id": "added-later", "text": "not in the checksum"}\n')
    with pytest.raises(vexchange.errors.IntegrityError):
        vexchange.inspect(small)
    ui = start(started, small)
    _, overview = get(ui, "/api/overview")
    assert "checksum" in overview["checks"]["unverified"]
    assert overview["inspect"]["sidecar"]["status"] == "mismatch"
    unchecked = vexchange.open_store(small)
    unchecked.verify_reads = False
    assert overview["inspect"] == msgspec.to_builtins(vexchange.inspect(unchecked))
    assert overview["inspect"]["records"] == 301
