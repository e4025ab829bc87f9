"""Finding a connector by name: a builtin table plus the ``vexchange.connectors`` entry points.

Builtins are strings, imported only when used, so ``vex --help`` never imports a vendor SDK.
Third-party packages declare::

    [project.entry-points."vexchange.connectors"]
    mystore = "mypackage:MyStoreConnector"

A plugin may not take a builtin name; such a plugin is ignored (with a logged warning).

The registry also answers ``StoreSpec.parse``'s questions (``SCHEMES``, installed on import):
which connector a bare path's suffix names and which schemes take a path, from what each
connector declares (``Connector.suffixes``, ``Connector.takes_path``). The builtins' rows below
repeat their declarations, so parsing ``memory.mg`` imports no connector module (a test holds
each row to its class); a plugin's class is imported to ask only when its scheme is used, or when
a bare path matches no builtin suffix.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import MissingDependencyError, UnknownConnectorError, UsageError
from ..spec import StoreSpec, use_schemes
from ._base import Capabilities, Connector

__all__ = ["SCHEMES", "Entry", "Location", "available", "get", "open_store", "register"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    target: str
    """``module:Class``"""
    extra: str | None = None
    requires: tuple[str, ...] = ()
    distribution: str | None = None
    """For a plugin: the package that declares it (what ``pip install`` needs)."""
    builtin: bool = False
    suffixes: tuple[str, ...] = ()
    """For a builtin: its class's ``suffixes`` (an alias such as ``jsonl`` has none: a bare
    path is named by the connector's own name). Unused for a plugin, whose class says."""
    takes_path: bool = False
    """For a builtin: its class's ``takes_path``."""
    userinfo: str | None = None
    """For a builtin: its class's ``url_userinfo``."""
    secret: str | None = None
    """For a builtin: its class's ``url_secret``."""


_BUILTINS: dict[str, Entry] = {
    "chroma": Entry("vexchange.connectors.chroma:ChromaConnector", "chroma", ("chromadb",),
                    secret="token"),
    "lancedb": Entry("vexchange.connectors.lancedb:LanceDBConnector", "lancedb",
                     ("lancedb", "pyarrow"), takes_path=True),
    "pinecone": Entry("vexchange.connectors.pinecone:PineconeConnector", "pinecone", ("pinecone",),
                      secret="api_key"),
    "weaviate": Entry("vexchange.connectors.weaviate:WeaviateConnector", "weaviate", ("weaviate",),
                      secret="api_key"),
    "redis": Entry("vexchange.connectors.redis:RedisConnector", "redis", ("redis",), userinfo="user"),
    "milvus": Entry("vexchange.connectors.milvus:MilvusConnector", "milvus", ("pymilvus",),
                    userinfo="token", secret="token"),
    "pgvector": Entry("vexchange.connectors.pgvector:PgvectorConnector", "pgvector",
                      ("psycopg", "pgvector"), userinfo="user"),
    "qdrant-edge": Entry("vexchange.connectors.qdrant_edge:QdrantEdgeConnector", "qdrant-edge",
                         ("qdrant_edge",), takes_path=True),
    "qdrant": Entry("vexchange.connectors.qdrant:QdrantConnector", "qdrant", ("qdrant_client",),
                    secret="api_key"),
    "mg": Entry("vexchange.connectors.mg:MgConnector", suffixes=(".mg",), takes_path=True),
    "cartridge": Entry("vexchange.connectors.cartridge:CartridgeConnector", suffixes=(".cartridge",),
                       takes_path=True),
    "vectorpack": Entry("vexchange.connectors.vectorpack:VectorPackConnector", suffixes=(".vpack",),
                        takes_path=True),
    "jsonl": Entry("vexchange.connectors.vmig:VmigConnector", takes_path=True),
    "vektor": Entry("vexchange.connectors.vektor:VektorConnector", takes_path=True),
    "vmig": Entry("vexchange.connectors.vmig:VmigConnector", suffixes=(".vmig.jsonl", ".jsonl"),
                  takes_path=True),
    # conversation exports: no suffix (a .zip or a conversations.json could be either one)
    "claude-export": Entry("vexchange.connectors.claude_export:ClaudeExportConnector", takes_path=True),
    "chatgpt-export": Entry("vexchange.connectors.chatgpt_export:ChatGPTExportConnector",
                            takes_path=True),
    # the ecosystem's files
    "parquet": Entry("vexchange.connectors.parquet:ParquetConnector", "parquet", ("pyarrow",),
                     suffixes=(".parquet",), takes_path=True),
    "pinecone-bulk": Entry("vexchange.connectors.pinecone_bulk:PineconeBulkConnector", "parquet",
                           ("pyarrow",), takes_path=True),
    "milvus-bulk": Entry("vexchange.connectors.milvus_bulk:MilvusBulkConnector", "parquet",
                         ("pyarrow",), takes_path=True),
    "vdf": Entry("vexchange.connectors.vdf:VdfConnector", "vdf", ("pyarrow",), takes_path=True),
    "lance": Entry("vexchange.connectors.lance:LanceConnector", "lance", ("lance", "pyarrow"),
                   suffixes=(".lance",), takes_path=True),
    "sqlite-vec": Entry("vexchange.connectors.sqlite_vec:SqliteVecConnector", "sqlite-vec",
                        ("sqlite_vec",), takes_path=True),
    "duckdb": Entry("vexchange.connectors.duckdb:DuckDBConnector", "duckdb", ("duckdb", "pyarrow"),
                    suffixes=(".duckdb",), takes_path=True),
    "faiss": Entry("vexchange.connectors.faiss:FaissConnector", "faiss", ("faiss",), suffixes=(".faiss",),
                   takes_path=True),
    "oms-store": Entry("vexchange.connectors.oms_store:OmsStoreConnector", "crypto", ("cryptography",),
                       takes_path=True),
    # agent memory frameworks
    "mem0": Entry("vexchange.connectors.mem0:Mem0Connector", "mem0", ("mem0",), takes_path=True),
    "langgraph-sqlite": Entry("vexchange.connectors.langgraph:LangGraphSqliteConnector", "langgraph",
                              ("langgraph",), takes_path=True),
    "letta-af": Entry("vexchange.connectors.letta_af:LettaAgentFileConnector", suffixes=(".af",),
                      takes_path=True),
    "langgraph-postgres": Entry("vexchange.connectors._langgraph_pg:LangGraphPostgresConnector",
                                "langgraph-postgres", ("langgraph", "psycopg"), userinfo="user"),
}
_BUILTINS = {name: dataclasses.replace(entry, builtin=True) for name, entry in _BUILTINS.items()}
_REGISTERED: dict[str, Entry] = {}


def register(name: str, target: str, *, replace: bool = False) -> None:
    """Add a connector at run time (tests, notebooks)."""
    if not replace and (name in _BUILTINS or name in _REGISTERED):
        raise ValueError(f"a connector named {name!r} exists; pass replace=True to override it")
    _REGISTERED[name] = Entry(target)


@lru_cache(maxsize=1)
def _plugins() -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for ep in importlib.metadata.entry_points(group="vexchange.connectors"):
        if ep.name in _BUILTINS:
            log.warning("ignoring plugin connector %r: the name is builtin", ep.name)
            continue
        dist = getattr(ep, "dist", None)
        found[ep.name] = Entry(ep.value, distribution=dist.name if dist is not None else None)
    return found


def _entries() -> dict[str, Entry]:
    return {**_plugins(), **_BUILTINS, **_REGISTERED}


def available() -> dict[str, Entry]:
    """Every known connector name and its entry, without importing any of them."""
    return dict(sorted(_entries().items()))


def missing_requirement(entry: Entry) -> str | None:
    """The first required module that is not installed, or None."""
    return next((m for m in entry.requires if importlib.util.find_spec(m) is None), None)


def get(name: str) -> type[Connector]:
    """The connector class for a name; clear errors for unknown names or missing extras."""
    entries = _entries()
    entry = entries.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, entries, n=1)
        raise UnknownConnectorError(
            f"no connector named {name!r}; known: {', '.join(sorted(entries))}",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    missing = missing_requirement(entry)
    if missing:
        raise _missing(name, missing, entry)
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise _missing(name, err.name or module_name, entry) from err
    return _checked(name, entry, getattr(module, attr, None))


def _missing(name: str, module: str, entry: Entry) -> MissingDependencyError:
    """The install hint: an extra of vexchange for a builtin, the plugin's own package (which
    should bring what it needs) for a plugin, never a ``vexchange[<plugin>]`` that does not exist."""
    error = MissingDependencyError(name, module, entry.extra or name)
    if not entry.builtin:
        error.hint = (f"pip install {entry.distribution}" if entry.distribution else
                      f"install the package that provides the {name} connector ({entry.target})")
    return error


def _checked(name: str, entry: Entry, cls: object) -> type[Connector]:
    """The plugin contract, checked before anything runs: a Connector subclass whose ``name``
    is the name it is registered under, with capabilities. Builtins may be aliases (``jsonl``)."""
    where = f"{entry.target}" + (f" (from {entry.distribution})" if entry.distribution else "")
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise UsageError(f"the {name} connector {where} is not a vexchange Connector subclass",
                         hint="a connector subclasses vexchange.connectors.Connector;"
                              " see docs/writing-a-connector.md")
    if not entry.builtin:
        declared = getattr(cls, "name", None)
        if declared != name:
            raise UsageError(f"the {name} connector {where} calls itself {declared!r}",
                             hint=f"set name = {name!r} on the class, or register it as {declared!r}")
        if not isinstance(getattr(cls, "capabilities", None), Capabilities):
            raise UsageError(f"the {name} connector {where} declares no Capabilities",
                             hint="set capabilities = Capabilities(read=..., write=...) on the class")
        suffixes = getattr(cls, "suffixes", ())
        if not (isinstance(suffixes, tuple)
                and all(isinstance(s, str) and len(s) > 1 and s.startswith(".") for s in suffixes)):
            raise UsageError(f"the {name} connector {where} declares suffixes {suffixes!r}",
                             hint='set suffixes = (".mysuffix",) on the class: a tuple of suffixes,'
                                  " each starting with a dot, or () for none")
        if not isinstance(getattr(cls, "takes_path", False), bool):
            raise UsageError(f"the {name} connector {where} declares takes_path"
                             f" {getattr(cls, 'takes_path', None)!r}",
                             hint="set takes_path = True (its location is a path) or False")
    return cls


class _Schemes:
    """``StoreSpec.parse``'s ``SchemeTable``, from the connectors' declarations: a builtin's
    from its row (no import), a plugin's or a run-time registration's from its class."""

    def scheme_for_path(self, path: str) -> str | None:
        lowered = path.lower()
        builtin = _longest(lowered, ((name, entry.suffixes) for name, entry in _BUILTINS.items()
                                     if name not in _REGISTERED))  # no entry-point scan for these
        if builtin is not None:
            return builtin
        return _longest(lowered, ((name, cls.suffixes) for name, cls in _classes(_entries())))

    def takes_path(self, scheme: str) -> bool:
        entry = _entries().get(scheme)
        if entry is None:
            return False
        if entry.builtin:
            return entry.takes_path
        try:
            return get(scheme).takes_path
        except UsageError:  # not installed, or breaks the contract: open_store says so next
            return False

    def credentials(self, scheme: str) -> tuple[str | None, str | None]:
        entry = _entries().get(scheme)
        if entry is None:
            return None, None
        if entry.builtin:
            return entry.userinfo, entry.secret
        try:
            cls = get(scheme)
        except UsageError:
            return None, None
        return cls.url_userinfo, cls.url_secret


def _longest(path: str, declared: Iterator[tuple[str, tuple[str, ...]]]) -> str | None:
    """The connector whose suffix is the longest that ends the (lower-cased) path, or None."""
    best: tuple[int, str] | None = None
    for name, suffixes in declared:
        for suffix in suffixes:
            if path.endswith(suffix.lower()) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), name)
    return best[1] if best else None


def _classes(entries: dict[str, Entry]) -> Iterator[tuple[str, type[Connector]]]:
    """The classes of the connectors that are not builtin, imported to read their suffixes;
    one that cannot be imported is skipped, with a warning (it cannot name a path)."""
    for name, entry in entries.items():
        if entry.builtin:
            continue
        try:
            yield name, get(name)
        except UsageError as err:
            log.warning("connector %r cannot be asked about file suffixes: %s", name, err)


SCHEMES = _Schemes()
"""What ``StoreSpec.parse`` asks: installed as its default table below."""
use_schemes(SCHEMES)


Location = str | Path | StoreSpec | Connector
"""Where a store is: a URL, a file path, a parsed spec, or a connector already bound."""


def open_store(location: Location, *, secrets: Mapping[str, str] | None = None) -> Connector:
    """A connector for a URL, a file path, a parsed spec, or a connector (returned as is).

    ``secrets`` (API keys, passwords, tokens by name) override ``VEX_<CONNECTOR>_<NAME>``
    environment variables; they never appear in receipts, sidecars or logs."""
    if isinstance(location, Connector):
        return location
    if isinstance(location, StoreSpec):
        spec = location.with_secrets(secrets)  # a secret given twice must agree
    else:
        spec = StoreSpec.parse(str(location), secrets=secrets, schemes=SCHEMES)
    connector = get(spec.scheme)
    _check_url_options(connector, spec)
    return connector.from_spec(spec)


def _check_url_options(connector: type[Connector], spec: StoreSpec) -> None:
    """A URL option the connector does not read is a typo until proven otherwise: refuse it
    (naming the ones it reads) rather than write into a default table or collection."""
    known = connector.url_options
    unknown = sorted(set(spec.params) - known) if known is not None else []
    if unknown:
        offered = ", ".join(sorted(known)) if known else "none"
        close = difflib.get_close_matches(unknown[0], sorted(known or ()), n=1)
        raise UsageError(
            f"{spec.scheme} does not know the URL option{'s' if len(unknown) > 1 else ''}"
            f" {', '.join(repr(u) for u in unknown)}; it reads: {offered}",
            hint=f"did you mean {close[0]!r}?" if close
            else f"see docs/connectors for the {spec.scheme} location's options")
