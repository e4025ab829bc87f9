"""Finding a connector by name: a builtin table plus the ``vexchange.connectors`` entry points.

Builtins are strings, imported only when used, so ``vex --help`` never imports a vendor SDK.
Third-party packages declare::

    [project.entry-points."vexchange.connectors"]
    mystore = "mypackage:MyStoreConnector"

A plugin may not take a builtin name; such a plugin is ignored (with a logged warning).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache

from ..errors import MissingDependencyError, UnknownConnectorError, UsageError
from ._base import Capabilities, Connector

__all__ = ["Entry", "available", "get", "register"]

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


_BUILTINS: dict[str, Entry] = {
    "chroma": Entry("vexchange.connectors.chroma:ChromaConnector", "chroma", ("chromadb",)),
    "lancedb": Entry("vexchange.connectors.lancedb:LanceDBConnector", "lancedb",
                     ("lancedb", "pyarrow")),
    "pinecone": Entry("vexchange.connectors.pinecone:PineconeConnector", "pinecone", ("pinecone",)),
    "weaviate": Entry("vexchange.connectors.weaviate:WeaviateConnector", "weaviate", ("weaviate",)),
    "redis": Entry("vexchange.connectors.redis:RedisConnector", "redis", ("redis",)),
    "milvus": Entry("vexchange.connectors.milvus:MilvusConnector", "milvus", ("pymilvus",)),
    "pgvector": Entry("vexchange.connectors.pgvector:PgvectorConnector", "pgvector",
                      ("psycopg", "pgvector")),
    "qdrant-edge": Entry("vexchange.connectors.qdrant_edge:QdrantEdgeConnector", "qdrant-edge",
                         ("qdrant_edge",)),
    "qdrant": Entry("vexchange.connectors.qdrant:QdrantConnector", "qdrant", ("qdrant_client",)),
    "mg": Entry("vexchange.connectors.mg:MgConnector"),
    "cartridge": Entry("vexchange.connectors.cartridge:CartridgeConnector"),
    "vectorpack": Entry("vexchange.connectors.vectorpack:VectorPackConnector"),
    "jsonl": Entry("vexchange.connectors.vmig:VmigConnector"),
    "vektor": Entry("vexchange.connectors.vektor:VektorConnector"),
    "vmig": Entry("vexchange.connectors.vmig:VmigConnector"),
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
    return cls
