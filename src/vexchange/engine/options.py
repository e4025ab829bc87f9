"""The run options: one dataclass is the single source of every option of a run.

Each field of ``RunOptions`` carries its type (``Literal`` for a mode), its default and its help
text (``option(...)``). From them come the ``vex`` options of every command that runs
(cli/_options.py generates them), the "Run options" section of the docstrings of ``migrate``,
``export`` and ``import_`` and their signatures (``takes_run_options``, which also refuses, when the
package is imported, a written-out keyword parameter that does not match its field), the
options a receipt records (``as_dict``), and the usage checks made before a run (``validate``).

Adding an option is adding a field here and the engine code that reads it: the CLI and the three
API functions take it at once (the functions through ``**more_options``, until it is also
written out as a keyword parameter of the same name and default, which type checkers see).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar

from .._time import format_timestamp, parse_timestamp
from ..errors import UsageError

__all__ = ["DimsPolicy", "Metric", "NoOtherOptions", "OptionInfo", "Reembed", "RunOptions", "Workers",
           "option",
           "option_fields", "run_options_of", "signature_mismatches", "takes_run_options"]

Metric = Literal["cosine", "dot", "euclidean", "manhattan"]
METRICS: tuple[str, ...] = typing.get_args(Metric)
Reembed = Literal["all", "missing"]
DimsPolicy = Literal["skip", "reembed", "adapt"]
Workers = int | Literal["auto"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class OptionInfo:
    """What a field says about itself beyond its type and default (``dataclasses`` metadata)."""

    help: str
    flag: str | None = None
    """The CLI flag when it is not ``--<name with dashes>``: ``--namespace`` (given once per
    namespace) for ``namespaces``, ``--no-verify`` for ``verify``, whose default is True."""
    metavar: str | None = None
    minimum: int | None = None
    timestamp: bool = False
    """Given as ISO-8601 text or epoch (seconds or milliseconds), held in epoch milliseconds."""
    file: bool = False
    """A file's path (the CLI refuses a directory)."""
    receipt: Literal["always", "vectors", "set", "never"] = "always"
    """Whether the receipt's options record it: always, only when the run changes vectors
    (``VectorTransform.wanted``), only when it is not the default (``set``: options added
    later, so older receipts keep their shape), or never (``resume``: the receipt says
    ``resumed``; ``sign``: a key file's place)."""
    aliases: tuple[str, ...] = ()
    """Older CLI spellings that still work, hidden from ``--help``."""


def option(default: Any, help: str, **info: Any) -> Any:
    """A ``RunOptions`` field: its default and what the CLI and the docs say about it."""
    return field(default=default, metadata={"vex": OptionInfo(help=help, **info)})


def option_fields(
    cls: type[RunOptions] | None = None,
) -> list[tuple[dataclasses.Field[Any], OptionInfo, Any]]:
    """Every run option of ``cls`` (RunOptions or a subclass) in declaration order, with its
    ``OptionInfo`` and its resolved type annotation."""
    cls = cls or RunOptions
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata["vex"], hints[f.name]) for f in dataclasses.fields(cls) if "vex" in f.metadata]


def literal_choices(annotation: Any) -> tuple[str, ...] | None:
    """The values of a ``Literal`` (or ``Literal | None``) annotation, else None."""
    if typing.get_origin(annotation) is Literal:
        return tuple(typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if any(typing.get_origin(a) is not Literal for a in args):
            return None  # a number or a word (``workers``: N or auto) is no choice of words
        for arg in args:
            return tuple(typing.get_args(arg))
    return None


@dataclass
class RunOptions:
    """Everything that shapes a run, with the library's defaults (nothing else repeats them).

    The field order is the order of the receipt's ``options``."""

    namespaces: Sequence[str] | None = option(
        None, "Only records in this namespace (repeatable).", flag="--namespace", metavar="NS")
    limit: int | None = option(None, "Stop after this many records.", minimum=0)
    since: int | None = option(
        None, "Only records created at or after this time (ISO-8601 or epoch).", timestamp=True)
    until: int | None = option(
        None, "Only records created before this time (ISO-8601 or epoch).", timestamp=True)
    batch_size: int | None = option(
        None, "Records per page and per write [default: the target's preferred size, else 500].",
        minimum=1)
    retries: int = option(
        3, "Attempts per batch on transient failures, the first included (backoff with jitter).",
        minimum=1)
    dry_run: bool = option(False, "Read, check and count; write nothing.")
    resume: bool = option(False, "Continue an interrupted run from its checkpoint.", receipt="never")
    allow_skips: bool = option(
        False, "Exit 0 even when records were skipped (they are still in the rejects file).")
    metric: Metric | None = option(
        None, "Distance a target creates its collection with, when the source declares none"
              " [default: cosine].")
    verify: bool = option(
        True, "Check the source against its checksum, footer or content ids while reading;"
              " --no-verify reads it unchecked (recorded in the receipt).", flag="--no-verify")
    """Check the source against what its format records (a sidecar checksum, a footer,
    content ids) while reading; False (``--no-verify``) is the explicit way out."""
    verify_first: bool = option(
        False, "Check the source against its checksum, footer or content ids before writing"
               " anything [default: while reading, failing the run at the end].")
    """Make those checks over the whole source before the target is opened."""
    reembed: Reembed | None = option(
        None, "Compute default vectors from each record's text: for every record, or only those"
              " without one (needs --embed-model).", receipt="vectors")
    embed_model: str | None = option(
        None, "minilm, static, st:PATH, openai+URL?model=NAME or ollama+URL?model=NAME.",
        metavar="MODEL", receipt="vectors")
    keep_old_vector: str | None = option(
        None, "Keep a replaced vector beside the new one, as a named vector.", metavar="NAME",
        receipt="vectors")
    on_dims_mismatch: DimsPolicy = option(
        "skip", "A vector whose size the target does not hold: skip the record (counted),"
                " re-embed it from its text, or translate it with --adapter.", receipt="vectors")
    adapter: str | None = option(
        None, "Translate default vectors with this adapter (vex adapter train).", metavar="FILE",
        file=True, receipt="vectors")
    force_adapter: bool = option(
        False, "Use an adapter whose measured quality is below the thresholds.", receipt="vectors")
    compat: Literal["vex"] | None = option(
        None, "Write .vmig.jsonl that the published Vex's database loaders take too: created_at in"
              " epoch seconds (milliseconds kept in an extension key), a lone named vector as"
              " `vector`.", receipt="set")
    sign: str | None = option(
        None, "Sign the .vmig.jsonl written with this Ed25519 key file: a .vmig.sig beside it,"
              " which the published Vex verifies too.", metavar="KEY", file=True, receipt="never")
    workers: Workers = option(
        1, "Worker processes, each reading its shards of the source and writing with its own"
           " writer; auto = the CPUs this process may use (docs/engine.md, Parallel runs).",
        metavar="N|auto", receipt="set")

    engine: Literal["local", "ray"] = option(
        "local", "Where the workers run: local processes, or Ray tasks (extra ray; docs/engine.md).",
        receipt="set")
    ray_address: str | None = option(
        None, "The Ray cluster to run on (ray://host:10001, or auto) [default: a local Ray"
              " instance].", metavar="ADDRESS", receipt="set")
    incremental: bool = option(
        False, "Copy only what changed since the previous run's receipt into this target, and"
               " propagate deletions where the source can list them (docs/engine.md).",
        receipt="set")
    bulk: bool = option(
        False, "Load the target through its server-side bulk import instead of upserts (Pinecone:"
               " import files written to the object storage its ?bulk_uri= names), then check what"
               " it imported; refused by a target without one (docs/connectors/pinecone.md).",
        receipt="set")

    def worker_count(self) -> int:
        """``workers`` as a number: ``auto`` is the CPUs this process may use (its affinity
        mask, so ``taskset`` and a container's CPU set count, not the machine's cores)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                       else os.cpu_count() or 1)
        return int(self.workers)

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> RunOptions:
        """The options from a call's keyword arguments (``locals()`` of ``migrate``, a CLI
        command's parameters): each field by its name, anything else ignored. Timestamps are
        parsed, an empty namespace list is none, a path is kept as text."""
        values: dict[str, Any] = {}
        for f, info, _ in option_fields(cls):
            if f.name not in arguments:
                continue
            value = arguments[f.name]
            if info.timestamp:
                value = _timestamp(f.name, value or None)
            elif f.name == "namespaces":
                value = list(value) if value else None
            elif info.file and value is not None:
                value = str(value)
            values[f.name] = value
        return cls(**values)

    def validate(self) -> None:
        from .vectors import check_options as check_vector_options

        check_vector_options(self)
        if self.verify_first and not self.verify:
            raise UsageError("--verify-first and --no-verify contradict each other; give one")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        if self.retries < 1:
            raise UsageError("retries must be at least 1 (it counts the first attempt)")
        if self.limit is not None and self.limit < 0:
            raise UsageError("limit must not be negative")
        if self.workers != "auto" and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                       or self.workers < 1):
            raise UsageError(f"workers must be a whole number, 1 or more, or auto (got {self.workers!r})")
        if self.metric is not None and self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")

    def as_dict(self) -> dict[str, Any]:
        """The options as the receipt records them."""
        from .vectors import VectorTransform

        vectors = VectorTransform.wanted(self)
        out: dict[str, Any] = {}
        for f, info, _ in option_fields(type(self)):
            value = getattr(self, f.name)
            if info.receipt == "never" or (info.receipt == "vectors" and not vectors) or (
                    info.receipt == "set" and value == f.default):
                continue
            if info.timestamp and value is not None:
                value = format_timestamp(value)
            elif isinstance(value, Sequence) and not isinstance(value, str):
                value = list(value) or None
            out[f.name] = value
        return out


def _timestamp(name: str, value: str | int | None) -> int | None:
    try:
        return parse_timestamp(value)
    except ValueError as err:
        raise UsageError(f"--{name}: {err}") from None


class NoOtherOptions(TypedDict):
    """The type of ``migrate``'s ``**more_options``: nothing, for a type checker (which sees
    only the options written out as parameters). At run time they take each run option that
    is a field of ``RunOptions`` but not yet a parameter (``run_options_of``)."""


def run_options_of(options: type[RunOptions]) -> Callable[[F], F]:
    """A decorator for a function that takes the fields of ``options`` as keyword parameters.

    The fields it writes out (so type checkers see them) must have the field's name, be
    keyword-only and default alike, or the module fails to import with a ``TypeError`` naming
    them. A field it does not write out is added to its public signature (name, type, default)
    and reaches it through its ``**more_options``, so a field added to ``RunOptions`` alone is
    at once an option of the function; a keyword that is no parameter and no field is refused
    as Python refuses one. The options' help is appended to the docstring."""

    def decorate(fn: F) -> F:
        declared = inspect.signature(fn)
        problems = signature_mismatches(fn, options, declared_only=True)
        catch_all = next((p for p in declared.parameters.values()
                          if p.kind is inspect.Parameter.VAR_KEYWORD), None)
        generated = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                       annotation=annotation)
                     for f, _, annotation in option_fields(options) if f.name not in declared.parameters]
        if generated and catch_all is None:
            problems += [f"no keyword parameter {p.name}={p.default!r} and no **more_options to take it"
                         for p in generated]
        if problems:
            raise TypeError(f"{fn.__qualname__} does not take the run options as {options.__name__}"
                            f" declares them: {'; '.join(problems)}")
        public = declared.replace(parameters=_with_generated(declared, generated, options))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            public.bind(*args, **kwargs)  # a misspelt option fails here, not silently later
            return fn(*args, **kwargs)

        wrapper.__signature__ = public  # type: ignore[attr-defined]
        section = "\n".join("    " + line if line else "" for line in options_doc(options).splitlines())
        wrapper.__doc__ = (fn.__doc__ or "").rstrip() + "\n\n" + section + "\n"
        return typing.cast(F, wrapper)

    return decorate


def _with_generated(declared: inspect.Signature, generated: list[inspect.Parameter],
                    options: type[RunOptions]) -> list[inspect.Parameter]:
    """``declared``'s parameters without its ``**more_options``, the generated ones placed after
    the last run option it writes out (the order of the fields, then the function's own)."""
    names = {f.name for f, _, _ in option_fields(options)}
    params = [p for p in declared.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    last = max((i for i, p in enumerate(params) if p.name in names), default=None)
    if last is None:
        last = max((i for i, p in enumerate(params) if p.kind is not inspect.Parameter.KEYWORD_ONLY),
                   default=-1)
    return [*params[:last + 1], *generated, *params[last + 1:]]


def takes_run_options(fn: F) -> F:
    """``run_options_of(RunOptions)``: for ``migrate``, ``export`` and ``import_``."""
    return run_options_of(RunOptions)(fn)


def signature_mismatches(fn: Callable[..., Any], cls: type[RunOptions], *,
                         declared_only: bool = False) -> list[str]:
    """What ``fn``'s keyword parameters lack of ``cls``'s fields: a missing name (unless
    ``declared_only``) or a parameter that is not keyword-only or defaults otherwise (``[]``
    when they agree)."""
    params = inspect.signature(fn).parameters
    problems = []
    for f, _, _ in option_fields(cls):
        param = params.get(f.name)
        if param is None:
            if not declared_only:
                problems.append(f"no keyword parameter {f.name}={f.default!r}")
        elif param.kind is not inspect.Parameter.KEYWORD_ONLY:
            problems.append(f"{f.name} is not a keyword-only parameter")
        elif param.default != f.default:
            problems.append(f"{f.name} defaults to {param.default!r}, not {f.default!r}")
    return problems


def options_doc(cls: type[RunOptions]) -> str:
    """The "Run options" section of a docstring, from the fields' help and defaults."""
    lines = ["Run options (``RunOptions``; the CLI's are the same names with dashes):", ""]
    for f, info, _ in option_fields(cls):
        lines.append(f"- ``{f.name}={f.default!r}``: {info.help}")
    return "\n".join(lines)
