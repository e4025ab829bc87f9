"""The public functions. Each ``vex`` command calls exactly one of them, with the same names."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Unpack

import orjson

from . import signing
from .connectors import _registry
from .connectors._registry import Location, open_store
from .connectors._base import Connector
from .engine import reader_start
from .engine.progress import Progress
from .engine.receipt import Receipt
from .engine.options import (DimsPolicy, Metric, NoOtherOptions, Reembed, RunOptions, Workers,
                             takes_run_options)
from .engine.run import run
from .errors import CodecError, UsageError, VexError
from .spec import StoreSpec

__all__ = ["Location", "export", "import_", "migrate", "open_store"]



@takes_run_options
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
    metric: Metric | None = None,
    verify: bool = True,
    verify_first: bool = False,
    reembed: Reembed | None = None,
    embed_model: str | None = None,
    keep_old_vector: str | None = None,
    on_dims_mismatch: DimsPolicy = "skip",
    adapter: str | Path | None = None,
    force_adapter: bool = False,
    compat: Literal["vex"] | None = None,
    sign: str | Path | None = None,
    workers: Workers = 1,
    engine: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    incremental: bool = False,
    receipt: str | Path | None = None,
    rejects: str | Path | None = None,
    progress: Progress | None = None,
    source_secrets: Mapping[str, str] | None = None,
    target_secrets: Mapping[str, str] | None = None,
    operation: str = "migrate",
    **more_options: Unpack[NoOtherOptions],
) -> Receipt:
    """Copy every selected record from ``source`` to ``target`` and return the run's receipt.

    Records that cannot be written are skipped with a reason, counted in the receipt and written
    to the rejects file (``<target>.rejects.jsonl`` unless ``rejects`` says otherwise). The
    receipt goes to ``<target>.receipt.json`` unless ``receipt`` says otherwise (beside a file
    target, else in the working directory: ``Connector.run_files_base``). A run that stops can
    be continued with ``resume=True``. Raises MigrationError when a run stops.

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
    # a large file source's reading child imports while the stores' clients do (reader_start.py)
    reader_start.start_early(source, workers=workers, incremental=incremental)
    try:
        src = open_store(source, secrets=source_secrets)
        dst = open_store(target, secrets=target_secrets)
        # every run option, by its name: the parameters written out and any field only RunOptions has
        options = RunOptions.from_arguments({**locals(), **more_options})
        # a key or a target that cannot be signed fails here, before anything is read or written
        signing_plan = signing.plan_signing(dst.run_files_base(), sign) if sign is not None else None
        base = _run_base(dst, options.namespaces)
        receipt_path = Path(receipt) if receipt else base.with_name(base.name + ".receipt.json")
        rejects_path = Path(rejects) if rejects else base.with_name(base.name + ".rejects.jsonl")
        try:
            result = run(src, dst, operation=operation, options=options, receipt_path=receipt_path,
                         rejects_path=rejects_path, progress=progress)
        finally:
            src.close()
            dst.close()
    finally:
        reader_start.discard()  # one the engine did not take
    if not dry_run:
        if signing_plan is not None:
            _sign_written(signing_plan)
        src.after_run_as_source(target=dst.describe()["location"], written=result.counts.written)
    return result


def _sign_written(plan: signing.SigningPlan) -> None:
    """Sign the file a finished run wrote. A failure leaves the file (complete, with its
    sidecar) and says how to sign it again."""
    try:
        plan.sign()
    except VexError as err:
        family = UsageError if isinstance(err, UsageError) else CodecError
        raise family(f"the run finished and {plan.file} is complete, but signing it failed: {err.message}",
                     hint=err.hint or f"sign it with: vex sign {plan.file} --key KEY") from None


@takes_run_options
def export(
    source: Location,
    output: str | Path,
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
    metric: Metric | None = None,
    verify: bool = True,
    verify_first: bool = False,
    reembed: Reembed | None = None,
    embed_model: str | None = None,
    keep_old_vector: str | None = None,
    on_dims_mismatch: DimsPolicy = "skip",
    adapter: str | Path | None = None,
    force_adapter: bool = False,
    compat: Literal["vex"] | None = None,
    sign: str | Path | None = None,
    workers: Workers = 1,
    engine: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    incremental: bool = False,
    receipt: str | Path | None = None,
    rejects: str | Path | None = None,
    progress: Progress | None = None,
    source_secrets: Mapping[str, str] | None = None,
    **more_options: Unpack[NoOtherOptions],
) -> Receipt:
    """Write a store's records to a file (``.vmig.jsonl``): ``migrate`` into a file target."""
    arguments = locals()
    more = arguments.pop("more_options")  # options only RunOptions declares so far
    del arguments["source"], arguments["output"]
    return migrate(source, StoreSpec.parse(str(output), schemes=_registry.SCHEMES), operation="export",
                   **arguments, **more)


@takes_run_options
def import_(
    input: str | Path,
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
    metric: Metric | None = None,
    verify: bool = True,
    verify_first: bool = False,
    reembed: Reembed | None = None,
    embed_model: str | None = None,
    keep_old_vector: str | None = None,
    on_dims_mismatch: DimsPolicy = "skip",
    adapter: str | Path | None = None,
    force_adapter: bool = False,
    compat: Literal["vex"] | None = None,
    sign: str | Path | None = None,
    workers: Workers = 1,
    engine: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    incremental: bool = False,
    receipt: str | Path | None = None,
    rejects: str | Path | None = None,
    progress: Progress | None = None,
    target_secrets: Mapping[str, str] | None = None,
    **more_options: Unpack[NoOtherOptions],
) -> Receipt:
    """Load a file's records into a store: ``migrate`` from a file source.

    The file's sidecar gets an entry in its import history (export fields are left alone).
    """
    arguments = locals()
    more = arguments.pop("more_options")  # options only RunOptions declares so far
    del arguments["input"], arguments["target"]
    return migrate(StoreSpec.parse(str(input), schemes=_registry.SCHEMES), target, operation="import",
                   **arguments, **more)


def _run_base(target: Connector, namespaces: Sequence[str] | None) -> Path:
    """Where receipts, rejects and checkpoints go: beside the path the target names
    (``Connector.run_files_base``); else in the working directory, named after the whole target
    (store, collection or table, the namespaces selected), so runs into two collections of one
    store never share or overwrite them."""
    path = target.run_files_base()
    if path is not None:
        return path
    described = target.describe()
    identity = orjson.dumps([described, sorted(namespaces or ())], option=orjson.OPT_SORT_KEYS)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", str(described.get("location", ""))).strip("-.")
    if namespaces:
        readable += "-ns-" + re.sub(r"[^A-Za-z0-9._-]+", "-", "+".join(sorted(namespaces)))
    digest = hashlib.sha256(identity).hexdigest()[:8]
    return Path.cwd() / f"vex-{target.name}-{readable[-80:].lstrip('-.')}-{digest}"
