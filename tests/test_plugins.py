"""Third-party connectors: the registry's checks of the plugin contract, and the example plugin
package (examples/vex-jsondir) installed into a temporary directory and used through `vex`,
both ways, as a user would after `pip install vex-jsondir`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vexchange.connectors import Capabilities, Connector, _registry
from vexchange.errors import UsageError
from vexchange.testing.conformance import ConnectorConformance, read_all, write_vmig
from vexchange.testing.records import sample_records

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vex-jsondir"
_VEX = "import sys; from vexchange.cli import main; sys.exit(main())"  # `vex`, in a subprocess


class _Misnamed(Connector):
    name = "another-name"
    capabilities = Capabilities(read=True, write=False)


class _NotAConnector:
    name = "notaconnector"


class _NoCapabilities(Connector):
    name = "plugin"


@pytest.mark.parametrize(("target", "words"), [
    (f"{__name__}:_Misnamed", "calls itself 'another-name'"),
    (f"{__name__}:_NotAConnector", "is not a vexchange Connector subclass"),
    (f"{__name__}:_NoSuchClass", "is not a vexchange Connector subclass"),
    (f"{__name__}:_NoCapabilities", "declares no Capabilities"),
])
def test_the_registry_checks_the_plugin_contract(target: str, words: str) -> None:
    _registry._REGISTERED["plugin"] = _registry.Entry(target)
    try:
        with pytest.raises(UsageError, match=words):
            _registry.get("plugin")
    finally:
        _registry._REGISTERED.pop("plugin")


def test_a_bare_path_with_the_plugins_suffix_resolves_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example declares ``suffixes = (".jsondir",)`` and ``takes_path``: the registry imports
    it to ask only because no builtin suffix matches, and a builtin's suffix stays the builtin's."""
    from vexchange.errors import InvalidSpecError
    from vexchange.spec import StoreSpec

    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    _registry._REGISTERED["jsondir"] = _registry.Entry("vex_jsondir:JsonDirConnector")
    try:
        assert StoreSpec.parse("memories/Store.JSONDIR") == StoreSpec("jsondir", "memories/Store.JSONDIR")
        assert StoreSpec.parse("memory.mg").scheme == "mg"
        with pytest.raises(InvalidSpecError, match="jsondir takes a file path"):
            StoreSpec.parse("jsondir://somewhere/dir")
    finally:
        _registry._REGISTERED.pop("jsondir")


@pytest.mark.slow
def test_the_example_plugin_installs_and_migrates_both_ways(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(EXAMPLE)],
                   check=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    records = list(sample_records(30, dims=4, named=("title",), sparse=True))
    source = write_vmig(tmp_path / "in.vmig.jsonl", records)

    def vex(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _VEX, *args], env=env, text=True,
                              capture_output=True, cwd=tmp_path, timeout=120)

    listed = vex("connectors", "--json")
    assert listed.returncode == 0 and "jsondir" in json.loads(listed.stdout), listed.stderr
    into = vex("migrate", str(source), f"jsondir://{tmp_path / 'store'}", "--quiet")
    assert into.returncode == 0, into.stderr
    assert len(list((tmp_path / "store").glob("*.json"))) == len(records)
    back = vex("migrate", f"jsondir://{tmp_path / 'store'}", str(tmp_path / "out.vmig.jsonl"),
               "--quiet")
    assert back.returncode == 0, back.stderr
    ConnectorConformance.assert_strictly_same(records, read_all(tmp_path / "out.vmig.jsonl"))
    again = vex("verify", str(tmp_path / "out.vmig.jsonl"), "--against", str(source))
    assert again.returncode == 0, again.stdout + again.stderr
    bare = vex("migrate", str(source), str(tmp_path / "bare.jsondir"), "--quiet")  # by its suffix
    assert bare.returncode == 0, bare.stderr
    assert len(list((tmp_path / "bare.jsondir").glob("*.json"))) == len(records)
    typo = vex("migrate", str(source), f"jsondir://{tmp_path / 'store'}?colection=x")
    assert typo.returncode == 2 and "does not know the URL option" in typo.stderr
