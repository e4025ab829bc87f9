"""Which connector a location names: bare paths by the suffixes connectors declare, and the
schemes whose location is a path, declared by each connector (``suffixes``, ``takes_path``)
and answered by the registry, so spec.py itself names no connector."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import vexchange.spec
from vexchange.connectors import Capabilities, Connector, _registry
from vexchange.errors import InvalidSpecError, UsageError
from vexchange.spec import StoreSpec

SPEC_SOURCE = Path(vexchange.spec.__file__)


@pytest.mark.parametrize(("path", "scheme"), [
    ("memory.vmig.jsonl", "vmig"),
    ("out.jsonl", "vmig"),
    ("OUT.JSONL", "vmig"),
    ("dir/memory.mg", "mg"),
    ("memory.cartridge", "cartridge"),
    ("memory.vpack", "vectorpack"),
    ("/abs/Memory.VPack", "vectorpack"),
])
def test_a_bare_path_is_named_by_its_suffix(path: str, scheme: str) -> None:
    spec = StoreSpec.parse(path)
    assert (spec.scheme, spec.path, spec.host) == (scheme, path, None)


@pytest.mark.parametrize("path", ["memory.db", "notes.txt", "memory.json", "mg", ".mgx"])
def test_a_bare_path_with_no_declared_suffix_is_refused_with_the_same_hint(path: str) -> None:
    with pytest.raises(InvalidSpecError, match="cannot tell which store") as caught:
        StoreSpec.parse(path)
    assert caught.value.hint == ("give a URL such as vektor:///path/memory.db, or a file ending in"
                                 " .vmig.jsonl, .mg or .jsonl")


_PATH_SCHEMES = ("vektor", "vmig", "jsonl", "cartridge", "vectorpack", "lancedb", "qdrant-edge", "mg",
                 "claude-export", "chatgpt-export", "mem0",
                 "langgraph-sqlite", "letta-af", "vdf", "lance",
                 "sqlite-vec", "duckdb", "faiss", "oms-store",
                 "parquet", "pinecone-bulk", "milvus-bulk")


@pytest.mark.parametrize("scheme", _PATH_SCHEMES)
def test_a_path_scheme_refuses_a_host(scheme: str) -> None:
    with pytest.raises(InvalidSpecError, match=f"{scheme} takes a file path") as caught:
        StoreSpec.parse(f"{scheme}://somewhere/memory")
    assert caught.value.hint is None
    with pytest.raises(InvalidSpecError, match="takes a file path") as caught:
        StoreSpec.parse(f"{scheme}://user:pw@somewhere/memory")
    assert caught.value.hint == "a file location has no user or password"
    assert StoreSpec.parse(f"{scheme}:///abs/memory").path == "/abs/memory"


@pytest.mark.parametrize("scheme", ["qdrant", "chroma", "weaviate", "pinecone", "unknown-store"])
def test_a_server_scheme_takes_a_host(scheme: str) -> None:
    spec = StoreSpec.parse(f"{scheme}://somewhere/memory")
    assert (spec.scheme, spec.host, spec.path) == (scheme, "somewhere", "/memory")


def test_the_path_schemes_are_what_the_builtins_declare() -> None:
    declared = {name for name, entry in _registry._BUILTINS.items() if entry.takes_path}
    assert declared == set(_PATH_SCHEMES)


@pytest.mark.parametrize("name", sorted(_registry._BUILTINS))
def test_each_builtin_row_repeats_its_class_declarations(name: str) -> None:
    """The rows let a bare path be parsed with no connector imported; they must not drift."""
    entry = _registry._BUILTINS[name]
    missing = _registry.missing_requirement(entry)
    if missing:
        pytest.skip(f"{missing} is not installed")
    module_name, _, attr = entry.target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    assert entry.takes_path is cls.takes_path
    assert (entry.userinfo, entry.secret) == (cls.url_userinfo, cls.url_secret)
    # an alias (jsonl) declares no suffixes of its own: a bare path takes the connector's own name
    assert entry.suffixes == (cls.suffixes if cls.name == name else ())


def test_spec_imports_no_connector_code() -> None:
    """spec.py sits below the connectors: the registry tells it what they declare."""
    tree = ast.parse(SPEC_SOURCE.read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names]
    assert not [name for name in imported if "connectors" in name or "api" in name], imported


def test_parsing_bare_paths_imports_no_connector_module() -> None:
    code = ("import sys; from vexchange.spec import StoreSpec; "
            "[StoreSpec.parse(p) for p in ('a.mg', 'a.cartridge', 'a.vpack', 'a.jsonl', 'vektor:a.db')]; "
            "print(sorted(m for m in sys.modules if m.startswith('vexchange.connectors.')"
            " or m.split('.')[0] in ('chromadb', 'lancedb', 'pymilvus', 'qdrant_client', 'redis',"
            " 'psycopg', 'pinecone', 'weaviate', 'qdrant_edge', 'pyarrow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert set(eval(out.stdout)) <= {"vexchange.connectors._base", "vexchange.connectors._registry",
                                     "vexchange.connectors.vmig"}, out.stdout


class _Table:
    def scheme_for_path(self, path: str) -> str | None:
        return "mine" if path.endswith(".mine") else None

    def takes_path(self, scheme: str) -> bool:
        return scheme == "mine"

    def credentials(self, scheme: str) -> tuple[str | None, str | None]:
        return None, None


def test_a_caller_may_pass_its_own_table() -> None:
    assert StoreSpec.parse("x.mine", schemes=_Table()).scheme == "mine"
    with pytest.raises(InvalidSpecError, match="cannot tell"):
        StoreSpec.parse("x.mg", schemes=_Table())
    with pytest.raises(InvalidSpecError, match="mine takes a file path"):
        StoreSpec.parse("mine://host/x", schemes=_Table())
    assert StoreSpec.parse("vektor://host/x", schemes=_Table()).host == "host"


class _Plugin(Connector):
    name = "plugin"
    suffixes = (".plug", ".mg")
    takes_path = True
    capabilities = Capabilities(read=True, write=False)


class _LongerSuffix(Connector):
    name = "plugin"
    suffixes = (".vmig.jsonl.x",)
    capabilities = Capabilities(read=True, write=False)


class _BadSuffixes(Connector):
    name = "plugin"
    suffixes = ("plug",)  # no dot
    capabilities = Capabilities(read=True, write=False)


class _BadTakesPath(Connector):
    name = "plugin"
    takes_path = "yes"  # type: ignore[assignment]
    capabilities = Capabilities(read=True, write=False)


Register = Callable[[str], None]


@pytest.fixture
def plugin() -> Iterator[Register]:
    """Registers one of the classes above as the connector ``plugin``, for one test."""
    def register(cls_name: str) -> None:
        _registry._REGISTERED["plugin"] = _registry.Entry(f"{__name__}:{cls_name}")
    yield register
    _registry._REGISTERED.pop("plugin", None)


def test_a_plugin_declares_its_suffixes_and_path(plugin: Register) -> None:
    plugin("_Plugin")
    assert StoreSpec.parse("dir/Memory.PLUG") == StoreSpec("plugin", "dir/Memory.PLUG")
    assert StoreSpec.parse("memory.mg").scheme == "mg"  # a builtin's suffix is never taken
    with pytest.raises(InvalidSpecError, match="plugin takes a file path"):
        StoreSpec.parse("plugin://host/x")
    plugin("_LongerSuffix")
    assert StoreSpec.parse("a.vmig.jsonl.x").scheme == "plugin"
    assert StoreSpec.parse("plugin://host/x").host == "host"


@pytest.mark.parametrize(("cls_name", "words"), [
    ("_BadSuffixes", "declares suffixes"), ("_BadTakesPath", "declares takes_path")])
def test_the_registry_checks_a_plugins_declarations(plugin: Register, cls_name: str, words: str) -> None:
    plugin(cls_name)
    with pytest.raises(UsageError, match=words):
        _registry.get("plugin")


def test_a_plugin_that_cannot_load_names_no_path(plugin: Register, caplog: pytest.LogCaptureFixture) -> None:
    plugin("_NoSuchClass")
    with pytest.raises(InvalidSpecError, match="cannot tell which store"):
        StoreSpec.parse("memory.plug")
    assert "plugin" in caplog.text
    assert StoreSpec.parse("plugin://host/x").host == "host"  # open_store then says what is wrong
