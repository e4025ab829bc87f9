"""The ``vex`` command group and what its commands share: printing a report, its exit code.

The group is lazy: ``COMMANDS`` names every top-level command, the module that declares it and
the one line ``vex --help`` shows for it, so ``vex --help``, ``vex --version`` and ``vex CMD``
import click and this module, then only CMD's module (importing all of them, each with what it
needs, took longer than the published Vex's whole start). tests/test_cli.py holds the table
equal to what the modules declare, and the lazy help equal to the help of the loaded group.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import click

from .._version import __version__

__all__ = ["COMMANDS", "EXIT_INTEGRITY", "EXIT_SKIPPED", "Command", "Group", "PendingParams", "cli", "emit",
           "emit_report", "lazy_module"]

EXIT_INTEGRITY = 3
EXIT_SKIPPED = 4

COMMANDS: dict[str, tuple[str, str]] = {
    "adapter": ("adapter", "Adapters between embedding models: train, eval, apply, list"
                " (docs/embeddings.md)."),
    "backup": ("backup", "Encrypted, versioned backups of any source to a Git remote or a directory."),
    "connectors": ("info", "Every connector, plugins included: what it can hold (read, write, named"
                   " vectors, records without a vector, one size per store, normalised vectors), the URL"
                   " options it reads, and whether what it needs is installed."),
    "convert": ("convert", "Write a source's conversations as openai-finetune, openai-context,"
                " generic-chat, anthropic-finetune or plain-text; refused conversations are counted"
                " and kept whole in the rejects file (exit 4 unless --allow-skips)."),
    "demo": ("info", "Build a demo VEKTOR database, export it, import it into a new one, and verify"
             " the copy."),
    "doctor": ("plan", "What is wrong with a source: mixed models or sizes, zero, NaN-prone or"
               " unnormalised vectors, duplicate ids, missing text, metric mismatches, near duplicates."),
    "export": ("run", "Write a store's records to a .vmig.jsonl file with its sidecar and a receipt."),
    "feedback": ("pack", "Record that a memory was used and helped (or not): its Elo moves; a receipt"
                 " is written."),
    "grains": ("grains", "OMS memory grains and .mg files: inspect, verify, decode, encode."),
    "import": ("run", "Load a .vmig.jsonl file into a store."),
    "inspect": ("check", "Counts, models, dims, namespaces, sources, time range and sidecar state."),
    "keygen": ("sign", "Make an Ed25519 key pair for `vex sign`: PATH (private, mode 0600) and"
               " PATH.pub."),
    "micropack": ("pack", "Write the top-K memories for a query as a token-friendly micro-pack"
                  " (JSONL)."),
    "migrate": ("run", "Copy records from one store to another: vex migrate SOURCE_URL TARGET_URL."),
    "pack": ("pack", "VectorPack bundles: create, verify, unpack (docs/formats/vectorpack.md)."),
    "plan": ("plan", "What vex migrate SOURCE TARGET would do and cost, writing nothing to TARGET."),
    "search": ("pack", "Ranked search over a cartridge or a VectorPack: similarity modulated by Elo"
               " and recency."),
    "sign": ("sign", "Sign a .vmig.jsonl file: a .vmig.sig beside it that Vex's `vex verify` accepts"
             " too."),
    "sync": ("backup", "Vex's name for vex backup: init, push, pull, status, diff with --db and"
             " --repo."),
    "ui": ("ui", "Inspect LOCATION in the browser: overview, embedding map, search, records, runs."),
    "validate": ("check", "Check every record of a .vmig.jsonl file; exit 3 on any error."),
    "verify": ("check", "Prove a target holds what it should (checksum, receipt digests, a source, a"
               " signature, search quality with --search)."),
}
"""Every top-level command: the module of vexchange.cli that declares it, and its one-line help
(the first sentence of its docstring, which ``vex --help`` shortens to the terminal's width).
A new command is a row here and its module; the test says when the two differ."""


class _Commands(MutableMapping[str, click.Command]):
    """The group's commands: a name of ``COMMANDS`` is listed without importing anything, and
    its module is imported when the command itself is first asked for (by click when it runs,
    or by a caller reading ``cli.commands[name]``). Commands added otherwise (a plugin calling
    ``cli.add_command``) are held as click holds them."""

    def __init__(self, lazy: dict[str, tuple[str, str]]) -> None:
        self._modules = {name: module for name, (module, _) in lazy.items()}
        self._loaded: dict[str, click.Command] = {}

    def loaded(self, name: str) -> click.Command | None:
        """The command if its module is imported, else None (imports nothing)."""
        return self._loaded.get(name)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded and name in self._modules:
            importlib.import_module(f"{__package__}.{self._modules[name]}")
            if name not in self._loaded:  # the table names a module that does not declare it
                raise LookupError(f"vexchange.cli.{self._modules[name]} declares no command {name!r}"
                                  " (cli/_app.py COMMANDS)")
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        found = self._loaded.pop(name, None) is not None
        if self._modules.pop(name, None) is None and not found:
            raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._modules, *self._loaded]))

    def __len__(self) -> int:
        return len(self._modules.keys() | self._loaded.keys())


class PendingParams:
    """Parameters not made yet: a placeholder among a command's parameters (``run_options(lazy=
    True)`` puts one there) that ``Command`` replaces by ``make()``'s parameters when the
    command's parameters are first read. Importing run.py declares three commands with some
    forty run options each; ``vex export --help`` now makes export's only, and ``vex pack --help``
    none (nor imports the engine's option table)."""

    def __init__(self, make: Callable[[], list[click.Parameter]]) -> None:
        self.make = make


class Command(click.Command):
    """click's Command, whose ``PendingParams`` become parameters when ``params`` is first read
    (click reads them only through ``params``: to parse, to show help, to complete)."""

    _params: list[click.Parameter]

    @property
    def params(self) -> list[click.Parameter]:
        params: list[Any] = self._params
        if any(isinstance(p, PendingParams) for p in params):
            made: list[click.Parameter] = []
            for p in params:
                made.extend(p.make() if isinstance(p, PendingParams) else [p])
            self._params = made
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value


class Group(click.Group):
    """A group under ``vex`` (pack, adapter, grains...): its commands and groups are of these
    classes too."""

    command_class = Command
    group_class = type


class LazyGroup(click.Group):
    """The top-level group: lists its commands from ``COMMANDS`` and imports a command's module
    only when that command runs or shows its own help."""

    command_class = Command
    group_class = Group

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: _Commands = _Commands(COMMANDS)
        self._listing = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if self._listing and cmd_name in COMMANDS and self.commands.loaded(cmd_name) is None:
            return click.Command(cmd_name, help=COMMANDS[cmd_name][1])  # its line in the list
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own list of commands, from the one-line helps of ``COMMANDS`` for the
        commands not imported, so the list looks as it would with every module imported."""
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="vex")
def cli() -> None:
    """vexchange: move agent and vector memory between stores and files, with proof.

    \b
    vex export  --from vektor --db memory.db --output memory.vmig.jsonl
    vex import  --from memory.vmig.jsonl --to vektor --db copy.db
    vex migrate vektor:///data/memory.db other.vmig.jsonl
    vex verify  other.vmig.jsonl --against vektor:///data/memory.db
    """


def lazy_module(name: str) -> types.ModuleType:
    """``vexchange.<name>``, imported when an attribute is first read (importlib's LazyLoader).

    The commands call the library (api, checks, signing), which brings numpy, the engine and
    every format: imported with the command modules, ``vex --help`` took 0.3 s more than the
    published Vex to start. A command that runs reads the attribute and pays then."""
    full = f"vexchange.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.find_spec(full)
    assert spec is not None and spec.loader is not None
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    loader.exec_module(module)
    return module


def emit(report: Any, as_json: bool) -> None:
    """A report on stdout: indented JSON with ``--json``, else one ``key: value`` per line. A
    typed report (a msgspec Struct) is shown as its fields."""
    import msgspec
    import orjson

    from ._render import print_mapping

    report = msgspec.to_builtins(report)  # typed results, lists of them, or plain data
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print_mapping(report)


def emit_report(ctx: click.Context, report: Any, as_json: bool) -> None:
    """A check's report (with an ``ok`` field or key); exit 3 (integrity failure) when not ok."""
    emit(report, as_json)
    if not (report["ok"] if isinstance(report, dict) else report.ok):
        ctx.exit(EXIT_INTEGRITY)
