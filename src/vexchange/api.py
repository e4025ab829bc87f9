"""The public functions. Each ``vex`` command calls exactly one of them, with the same names."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from ._time import parse_timestamp
from .connectors import _registry
from .connectors._base import Connector
from .engine.progress import Progress
from .engine.receipt import Receipt
from .engine.run import RunOptions, run
from .errors import UsageError
from .sidecar import record_import
from .spec import StoreSpec

__all__ = ["export", "import_", "migrate", "open_store"]

Location = str | Path | StoreSpec | Connector


def open_store(location: Location, *, secrets: Mapping[str, str] | None = None) -> Connector:
    """A connector for a URL, a file path, a parsed spec, or a connector (returned as is).

    ``secrets`` (API keys, passwords, tokens by name) override ``VEX_<CONNECTOR>_<NAME>``
    environment variables; they never appear in receipts, sidecars or logs."""
    if isinstance(location, Connector):
        return location
    if isinstance(location, StoreSpec):
        spec = location.with_secrets(secrets)  # a secret given twice must agree
    else:
        spec = StoreSpec.parse(str(location), secrets=secrets)
    connector = _registry.get(spec.scheme)
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


def migrate(
    source: Location,
    target: Location,
    *,
    namespaces: Sequence[str] | None = None,
    limit: int | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    batch_size: int | None = None,
    retries: int = 3,
    dry_run: bool = False,
    resume: bool = False,
    allow_skips: bool = False,
    receipt: str | Path | None = None,
    rejects: str | Path | None = None,
    progress: Progress | None = None,
    operation: str = "migrate",
    metric: str | None = None,
    source_secrets: Mapping[str, str] | None = None,
    target_secrets: Mapping[str, str] | None = None,
    reembed: str | None = None,
    embed_model: str | None = None,
    keep_old_vector: str | None = None,
    on_dims_mismatch: str = "skip",
    adapter: str | Path | None = None,
    force_adapter: bool = False,
    verify: bool = True,
    verify_first: bool = False,
) -> Receipt:
    """Copy every selected record from ``source`` to ``target`` and return the run's receipt.

    Records that cannot be written are skipped with a reason, counted in the receipt and written
    to the rejects file (``<target>.rejects.jsonl`` unless ``rejects`` says otherwise). The
    receipt goes to ``<target>.receipt.json`` unless ``receipt`` says otherwise. A run that
    stops can be continued with ``resume=True``. Raises MigrationError when a run stops.

    ``metric`` (cosine, dot, euclidean, manhattan) sets the distance a target creates its
    collection or index with, for sources that do not declare one (the default is cosine).

    New vectors on the way (docs/embeddings.md): ``reembed`` ("all" or "missing") computes
    default vectors from text with ``embed_model``; ``adapter`` translates them with a trained
    adapter; ``on_dims_mismatch`` ("skip", "reembed", "adapt") decides for vectors whose size
    the target does not hold; ``keep_old_vector`` keeps a replaced vector under that name.

    Read integrity (docs/engine.md): the source is checked against what its format records (a
    ``.vmig.jsonl`` file's sidecar checksum, a ``.mg`` file's footer and vectors hash, a
    cartridge's content ids) while it is read, and a mismatch fails the run before the target
    is finished (``IntegrityError``). ``verify_first=True`` checks before anything is written;
    ``verify=False`` reads without the checks (recorded in the receipt's options).
    """
    src = open_store(source, secrets=source_secrets)
    dst = open_store(target, secrets=target_secrets)
    options = RunOptions(
        namespaces=list(namespaces) if namespaces else None, limit=limit,
        since=_timestamp_option("since", since), until=_timestamp_option("until", until),
        batch_size=batch_size, retries=retries, dry_run=dry_run, resume=resume,
        allow_skips=allow_skips, metric=metric, reembed=reembed, embed_model=embed_model,
        keep_old_vector=keep_old_vector, on_dims_mismatch=on_dims_mismatch,
        adapter=None if adapter is None else str(adapter), force_adapter=force_adapter,
        verify=verify, verify_first=verify_first,
    )
    base = _run_base(dst, options.namespaces)
    receipt_path = Path(receipt) if receipt else base.with_name(base.name + ".receipt.json")
    rejects_path = Path(rejects) if rejects else base.with_name(base.name + ".rejects.jsonl")
    try:
        result = run(src, dst, operation=operation, options=options, receipt_path=receipt_path,
                     rejects_path=rejects_path, progress=progress)
    finally:
        src.close()
        dst.close()
    if not dry_run and getattr(src, "name", "") == "vmig":
        record_import(Path(src.spec.path or ""), dst.describe()["location"], result.counts.written)
    return result


def export(source: Location, output: str | Path, **options: Any) -> Receipt:
    """Write a store's records to a file (``.vmig.jsonl``): ``migrate`` into a file target."""
    return migrate(source, StoreSpec.parse(str(output)), operation="export", **options)


def import_(input: str | Path, target: Location, **options: Any) -> Receipt:
    """Load a file's records into a store: ``migrate`` from a file source.

    The file's sidecar gets an entry in its import history (export fields are left alone).
    """
    return migrate(StoreSpec.parse(str(input)), target, operation="import", **options)


def _timestamp_option(name: str, value: str | int | None) -> int | None:
    try:
        return parse_timestamp(value)
    except ValueError as err:
        raise UsageError(f"--{name}: {err}") from None


def _run_base(target: Connector, namespaces: Sequence[str] | None) -> Path:
    """Where receipts, rejects and checkpoints go: beside a file target; else in the working
    directory, named after the whole target (store, collection or table, the namespaces
    selected), so runs into two collections of one store never share or overwrite them."""
    path = getattr(target, "path", None)
    if isinstance(path, Path):
        return path
    described = target.describe()
    identity = orjson.dumps([described, sorted(namespaces or ())], option=orjson.OPT_SORT_KEYS)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", str(described.get("location", ""))).strip("-.")
    if namespaces:
        readable += "-ns-" + re.sub(r"[^A-Za-z0-9._-]+", "-", "+".join(sorted(namespaces)))
    return Path.cwd() / f"vex-{target.name}-{readable[-80:].lstrip('-.')}-{hashlib.sha256(identity).hexdigest()[:8]}"
