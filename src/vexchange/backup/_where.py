"""Where a backup repository lives: a plain directory, or a Git remote reached through ``git``.

Both give the rest of the package a directory to read and write (``Workspace.root``). For a
Git remote that directory is a fresh clone in a temporary folder (removed afterwards), and
``publish`` commits the new snapshot and pushes it; credentials are git's own business (its
credential helpers, SSH agent, ``~/.netrc``): vexchange never asks for, stores or passes a token.

Which one a location is (docs/backup.md, "Locations"): ``dir:PATH`` is a directory and
``git+URL`` a Git remote, whatever they look like; otherwise a URL git knows (``https://``,
``ssh://``, ``git://``, ``file://``), an scp-style ``user@host:path``, a path ending in ``.git``
or an existing bare repository or clone is a Git remote, and anything else a directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConnectorError, UsageError, redact
from ._crypto import PASSPHRASE_ENV

__all__ = ["Workspace", "describe_location", "workspace"]

_GIT_URL = re.compile(r"^(https?|ssh|git|file|git\+ssh)://", re.IGNORECASE)
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")
LOCK = ".vexbackup.lock"


@dataclass
class Workspace:
    """A directory holding the repository's files; ``publish`` makes new files durable where the
    repository really is (nothing to do for a directory; commit and push for Git)."""

    root: Path
    git: _Git | None = None

    def publish(self, message: str) -> None:
        if self.git is not None:
            self.git.publish(message)


def _is_git(location: str) -> bool:
    if _GIT_URL.match(location) or _SCP_LIKE.match(location) or location.rstrip("/").endswith(".git"):
        return True
    path = Path(location)
    return path.is_dir() and ((path / ".git").exists()
                              or ((path / "HEAD").is_file() and (path / "objects").is_dir()))


def _kind(location: str) -> tuple[str, str]:
    if not location:
        raise UsageError("no backup repository given")
    if location.startswith("dir:"):
        return "dir", location[4:]
    if location.startswith("git+"):
        return "git", _absolute(location[4:])
    return ("git", _absolute(location)) if _is_git(location) else ("dir", location)


def _absolute(url: str) -> str:
    """A local path made absolute: git runs in the clone's folder, not the caller's."""
    if _GIT_URL.match(url) or _SCP_LIKE.match(url):
        return url
    return str(Path(url).resolve())


def describe_location(location: str) -> str:
    """The location as results and receipts show it (a URL's password masked)."""
    kind, where = _kind(location)
    return redact(f"{kind}:{where}")


@contextlib.contextmanager
def workspace(location: str, *, write: bool, branch: str = "main") -> Iterator[Workspace]:
    """The repository's files in a directory. ``write``: the repository may be created (a
    directory made, an empty Git remote's first commit) and a push lock is held."""
    kind, where = _kind(location)
    if kind == "dir":
        root = Path(where)
        if not root.exists():
            if not write:
                raise UsageError(f"no backup repository at {where}", hint="push to it first")
            try:
                root.mkdir(parents=True)
            except OSError as err:
                raise UsageError(f"cannot create the backup directory {where}: {err.strerror}") from None
        elif not root.is_dir():
            raise UsageError(f"the backup repository {where} is not a directory")
        with _locked(root) if write else contextlib.nullcontext():
            yield Workspace(root)
        return
    with tempfile.TemporaryDirectory(prefix="vex-backup-") as tmp:
        git = _Git(where, Path(tmp) / "clone", branch)
        git.clone(write=write)
        yield Workspace(git.root, git)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One push at a time into a directory: a second one is refused, never interleaved."""
    lock = root / LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise UsageError(f"another push into {root} is running (lock file {lock})",
                         hint="wait for it; if none is running, remove the lock file") from None
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


class _Git:
    """The ``git`` command on a clone of the remote."""

    def __init__(self, url: str, root: Path, branch: str) -> None:
        self.url, self.root, self.branch = url, root, branch
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or branch.startswith(("-", "/")):
            raise UsageError(f"{branch!r} is not a branch name vexchange uses")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if shutil.which("git") is None:
            raise UsageError("backing up to a Git remote needs the git command, which is not installed",
                             hint="install git, or back up to a directory (dir:PATH)")
        env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}  # hooks never see it
        env.setdefault("GIT_TERMINAL_PROMPT", "0")
        done = subprocess.run(["git", *args], cwd=self.root if self.root.exists() else None,
                              env=env, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise ConnectorError(f"git {args[0]} failed for {self.url}: "
                                 + ("; ".join(detail[-3:]) or f"exit {done.returncode}"),
                                 connector="backup", operation=args[0],
                                 hint="check that the remote exists and that git can reach it"
                                      " (git signs in its own way: a credential helper, an SSH key)")
        return done

    def clone(self, *, write: bool) -> None:
        self.root.mkdir(parents=True)
        self.run("init", "--quiet")
        self.run("remote", "add", "origin", self.url)
        fetched = self.run("fetch", "--quiet", "--depth", "1", "origin",
                           f"refs/heads/{self.branch}", check=False)
        if fetched.returncode == 0:
            self.run("checkout", "--quiet", "-B", self.branch, "FETCH_HEAD")
            return
        missing = "couldn't find remote ref" in fetched.stderr.lower()
        if not missing:
            self.run("fetch", "--quiet", "--depth", "1", "origin", f"refs/heads/{self.branch}")
        if not write:
            raise UsageError(f"the Git remote {self.url} has no branch {self.branch}",
                             hint="push a snapshot to it first, or name the branch with --branch")
        self.run("checkout", "--quiet", "--orphan", self.branch)

    def publish(self, message: str) -> None:
        self.run("add", "--all", ".")
        identity: list[str] = []
        if self.run("config", "user.email", check=False).returncode != 0:
            identity = ["-c", "user.name=vex backup", "-c", "user.email=vex-backup@localhost"]
        self.run(*identity, "commit", "--quiet", "--no-verify", "-m", message)
        pushed = self.run("push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}", check=False)
        if pushed.returncode != 0:
            if "rejected" in pushed.stderr or "fetch first" in pushed.stderr:
                raise ConnectorError(f"the Git remote {self.url} changed while this snapshot was"
                                     " made (another push came first); nothing was pushed",
                                     connector="backup", operation="push",
                                     hint="run the same push again: it starts from the new snapshot")
            self.run("push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}")
