"""``vex backup init|push|pull|status|diff`` (``vex sync`` is Vex's name for it): encrypted,
versioned snapshots of a source. Each command calls one function of ``vexchange.backup``.

A passphrase is never a command-line argument (process lists and shell histories show those):
it comes from ``VEX_BACKUP_PASSPHRASE``, ``--passphrase-file`` or ``--key-file``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._app import cli, emit, lazy_module
from ._options import source_secret_option, target_secret_option
from ._running import run_command

if TYPE_CHECKING:
    from .. import errors
    from .. import spec as spec_module
    from ..spec import StoreSpec
else:  # imported when a command first uses them (_app.lazy_module)
    errors = lazy_module("errors")
    spec_module = lazy_module("spec")

F = TypeVar("F", bound=Callable[..., Any])

_KEY_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--passphrase-file", type=click.Path(dir_okay=False),
                 help="A file whose text is the passphrase [default: $VEX_BACKUP_PASSPHRASE]."),
    click.option("--key-file", type=click.Path(dir_okay=False),
                 help="A key file (16 bytes or more: head -c 32 /dev/urandom) instead of a passphrase."),
    click.option("--branch", default="main", show_default=True, help="The Git remote's branch."),
]
_KDF_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--kdf-memory", "kdf_memory_mib", type=click.IntRange(8, 4096), default=64,
                 show_default=True, help="Argon2id memory in MiB (when the repository is created)."),
    click.option("--kdf-iterations", type=click.IntRange(1, 64), default=3, show_default=True,
                 help="Argon2id passes (when the repository is created)."),
    click.option("--kdf-lanes", type=click.IntRange(1, 64), default=4, show_default=True,
                 help="Argon2id lanes (when the repository is created)."),
]
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
_SOURCE_SECRET = source_secret_option


def _with(options: list[Callable[[Any], Any]]) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def _push_options(fn: F) -> F:
    fn = click.option("--message", "-m", help="A note kept (encrypted) in the snapshot.")(fn)
    fn = click.option("--rejects", type=click.Path(dir_okay=False),
                      help="Where unreadable source records go [default: beside the source].")(fn)
    return _with([*_KEY_OPTIONS, *_KDF_OPTIONS, _SOURCE_SECRET, _JSON])(fn)


def _pull_options(fn: F) -> F:
    fn = click.option("--snapshot", type=click.IntRange(min=1),
                      help="The snapshot to restore [default: the latest].")(fn)
    fn = click.option("--dry-run", is_flag=True, help="Check and read the snapshot; write nothing.")(fn)
    fn = click.option("--allow-skips", is_flag=True, help="Exit 0 even if the target refused records.")(fn)
    fn = click.option("--receipt", type=click.Path(dir_okay=False),
                      help="Receipt path [default: <target>.receipt.json].")(fn)
    fn = click.option("--rejects", type=click.Path(dir_okay=False),
                      help="Rejects path [default: <target>.rejects.jsonl].")(fn)
    fn = target_secret_option(fn)
    fn = click.option("--quiet", is_flag=True, help="No progress bar and no summary.")(fn)
    return _with([*_KEY_OPTIONS, _JSON])(fn)


def _compare_options(fn: F) -> F:
    return _with([*_KEY_OPTIONS, _SOURCE_SECRET, _JSON])(fn)


# ------------------------------------------------------------------------------- vex backup


@cli.group()
def backup() -> None:
    """Encrypted, versioned backups of any source to a Git remote or a directory.

    \b
    export VEX_BACKUP_PASSPHRASE=...        (or --passphrase-file / --key-file)
    vex backup push vektor:///data/memory.db git@github.com:me/memory-backup.git
    vex backup status vektor:///data/memory.db git@github.com:me/memory-backup.git
    vex backup pull git@github.com:me/memory-backup.git vektor:///new/memory.db

    A REPOSITORY is a Git URL or repository (git+URL forces it) or a directory (dir:PATH)."""


@backup.command(name="init")
@click.argument("repository")
@_with([*_KEY_OPTIONS, *_KDF_OPTIONS, _JSON])
def backup_init_cmd(repository: str, as_json: bool, **options: Any) -> None:
    """Create a backup repository (or check the key against one)."""
    from ..backup import backup_init

    emit(backup_init(repository, **options), as_json)


@backup.command(name="push")
@click.argument("source")
@click.argument("repository")
@_push_options
def backup_push_cmd(source: str, repository: str, as_json: bool, **options: Any) -> None:
    """Snapshot SOURCE into REPOSITORY (only what changed since the latest snapshot)."""
    from ..backup import backup_push

    emit(backup_push(source, repository, **options), as_json)


@backup.command(name="pull")
@click.argument("repository")
@click.argument("target")
@_pull_options
@click.pass_context
def backup_pull_cmd(ctx: click.Context, /, repository: str, target: str, as_json: bool, quiet: bool,
                    **options: Any) -> None:
    """Restore the latest (or --snapshot N) snapshot of REPOSITORY into TARGET, every record checked."""
    from ..backup import backup_pull

    run_command(ctx, backup_pull, repository, target, as_json=as_json, quiet=quiet, **options)


@backup.command(name="status")
@click.argument("source")
@click.argument("repository")
@_compare_options
def backup_status_cmd(source: str, repository: str, as_json: bool, **options: Any) -> None:
    """Counts of records SOURCE added, changed and removed since the latest snapshot."""
    from ..backup import backup_status

    emit(backup_status(source, repository, **options), as_json)


@backup.command(name="diff")
@click.argument("source")
@click.argument("repository")
@_compare_options
def backup_diff_cmd(source: str, repository: str, as_json: bool, **options: Any) -> None:
    """The records (namespace and id) SOURCE added, changed and removed since the latest snapshot."""
    from ..backup import backup_diff

    emit(backup_diff(source, repository, **options), as_json)


# ------------------------------------------------------------------- vex sync (Vex's names)

_VEX_ONLY = {
    "--provider": "any Git URL works: give it as --repo (GitHub, Codeberg, Gitea, GitLab alike)",
    "--token": "vexchange takes no token and stores none; git signs in with its credential helper or SSH key",
    "--owner": "give the whole remote as --repo, e.g. git@github.com:OWNER/REPO.git",
    "--gitea-url": "give the whole remote as --repo, e.g. https://git.example.com/OWNER/REPO.git",
    "--min-importance": "a backup holds every record, so that it restores the store as it was",
    "--namespace": "a backup holds every namespace, so that it restores the store as it was",
    "--limit": "a backup holds every record, so that it restores the store as it was",
}


def _refuse_vex_only(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None:
        return
    if param.name == "token":
        errors.register_secret(str(value))
    flag = f"--{(param.name or '').replace('_', '-')}"
    raise errors.UsageError(f"vex sync {flag} has no vexchange equivalent", hint=_VEX_ONLY[flag])


def _vex_only(fn: F) -> F:
    for flag in _VEX_ONLY:
        fn = click.option(flag, hidden=True, expose_value=False, callback=_refuse_vex_only)(fn)
    return fn


_REPO = click.option("--repo", "repository", envvar="VEX_BACKUP_REPO", required=True,
                     help="The backup repository (Git URL or directory) [env: VEX_BACKUP_REPO].")
_DB = click.option("--db", help="A VEKTOR database path (Vex's --db).")


def _vektor(location: str | None, db: str | None, role: str) -> str | StoreSpec:
    if location and db:
        raise errors.UsageError(f"give the {role} once: as an argument or as --db")
    if db:
        return spec_module.StoreSpec("vektor", db)
    if not location:
        raise errors.UsageError(f"give the {role}: --db PATH for a VEKTOR database, or any URL as an"
                                " argument")
    return location


@cli.group()
def sync() -> None:
    """Vex's name for vex backup: init, push, pull, status, diff with --db and --repo."""


@sync.command(name="init")
@_REPO
@_with([*_KEY_OPTIONS, *_KDF_OPTIONS, _JSON])
@_vex_only
@_DB
def sync_init(repository: str, db: str | None, as_json: bool, **options: Any) -> None:
    """Create the backup repository (vex backup init); --db is accepted and not stored."""
    from ..backup import backup_init

    emit(backup_init(repository, **options), as_json)


@sync.command(name="push")
@click.argument("source", required=False)
@_REPO
@_DB
@_vex_only
@_push_options
def sync_push(source: str | None, repository: str, db: str | None, as_json: bool, **options: Any) -> None:
    """vex backup push, from --db PATH (or any SOURCE)."""
    from ..backup import backup_push

    emit(backup_push(_vektor(source, db, "source"), repository, **options), as_json)


@sync.command(name="pull")
@click.argument("target", required=False)
@_REPO
@_DB
@_vex_only
@_pull_options
@click.pass_context
def sync_pull(ctx: click.Context, /, target: str | None, repository: str, db: str | None, as_json: bool,
              quiet: bool, **options: Any) -> None:
    """vex backup pull, into --db PATH (or any TARGET)."""
    from ..backup import backup_pull

    run_command(ctx, backup_pull, repository, _vektor(target, db, "target"), as_json=as_json, quiet=quiet,
                **options)


@sync.command(name="status")
@click.argument("source", required=False)
@_REPO
@_DB
@_vex_only
@_compare_options
def sync_status(source: str | None, repository: str, db: str | None, as_json: bool, **options: Any) -> None:
    """vex backup status, for --db PATH (or any SOURCE)."""
    from ..backup import backup_status

    emit(backup_status(_vektor(source, db, "source"), repository, **options), as_json)


@sync.command(name="diff")
@click.argument("source", required=False)
@_REPO
@_DB
@_vex_only
@_compare_options
def sync_diff(source: str | None, repository: str, db: str | None, as_json: bool, **options: Any) -> None:
    """vex backup diff, for --db PATH (or any SOURCE)."""
    from ..backup import backup_diff

    emit(backup_diff(_vektor(source, db, "source"), repository, **options), as_json)
