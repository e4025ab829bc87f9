"""The published Vex CLI (npm ``@vektormemory/vex@0.8.8``), installed into a cache and run, so
interop tests check our files against the peer itself, not against our reading of its code.

``vex_cli()`` installs it once per cache directory (``$VEXTEST_VEX_NPM``, else
``~/.cache/vexchange/vex-npm-0.8.8``; about a minute: better-sqlite3 compiles from source) with
``pg`` for its pgvector connector and the ``@noble`` packages its ``sign``/``verify`` need, and
returns a ``VexCLI``. When npm or Node is missing or the registry cannot be reached it raises
``VexUnavailable`` with the reason; the tests skip on it, except under CI (``CI`` set), where
they fail. ``python -m vexchange.testing.vex_npm install`` installs ahead (``.ci/run`` does).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VEX_PACKAGE", "VexCLI", "VexUnavailable", "vex_cli"]

VEX_VERSION = "0.8.8"
VEX_PACKAGE = f"@vektormemory/vex@{VEX_VERSION}"
_PEERS = ("pg@8", "@noble/hashes@1", "@noble/ed25519@2")
"""What Vex loads lazily: ``pg`` for its pgvector connector, BLAKE3 and Ed25519 for sign/verify.
(better-sqlite3 comes with Vex; its version 12 builds on Node 20.)"""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class VexUnavailable(RuntimeError):
    """Vex cannot be installed or run here; the message says why."""


@dataclass(frozen=True)
class VexCLI:
    """The installed Vex: ``run("validate", path)`` runs ``vex validate path``."""

    root: Path

    @property
    def script(self) -> Path:
        return self.root / "node_modules" / "@vektormemory" / "vex" / "vex.mjs"

    def run(self, *args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run Vex with ``args``; never raises on its exit code. ``CI=1`` keeps its TUI off;
        ``stdout`` comes back without ANSI colours."""
        full_env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OLLAMA_URL")}
        full_env.update({"CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"})
        full_env.update(env or {})
        done = subprocess.run(["node", str(self.script), *map(str, args)], cwd=cwd, env=full_env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        return subprocess.CompletedProcess(done.args, done.returncode, _ANSI.sub("", done.stdout),
                                           _ANSI.sub("", done.stderr))


def default_cache() -> Path:
    configured = os.environ.get("VEXTEST_VEX_NPM")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "vexchange" / f"vex-npm-{VEX_VERSION}"


def vex_cli(cache: Path | None = None) -> VexCLI:
    """The published Vex, installed into ``cache`` if it is not there yet."""
    root = cache or default_cache()
    cli = VexCLI(root)
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise VexUnavailable(f"{tool} is not on PATH (Vex {VEX_VERSION} runs on Node.js)")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers install once
        if not (root / ".installed").exists():
            _install(root)
    version = cli.run("--version", timeout=60)
    if VEX_VERSION not in version.stdout:
        said = (version.stdout[-300:] + version.stderr[-300:]).strip()
        raise VexUnavailable(f"the Vex in {root} does not run: {said}")
    return cli


def _install(root: Path) -> None:
    if not (root / "package.json").exists():
        (root / "package.json").write_text('{"name": "vex-interop-cache", "private": true}\n')
    try:
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                               VEX_PACKAGE, *_PEERS], cwd=root, capture_output=True, text=True,
                              timeout=900, check=False)
    except subprocess.TimeoutExpired:
        raise VexUnavailable(f"npm install {VEX_PACKAGE} took more than 15 minutes") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-800:]
        raise VexUnavailable(f"npm install {VEX_PACKAGE} failed (is the npm registry reachable?): {tail}")
    (root / ".installed").write_text(VEX_PACKAGE + "\n")


def main(argv: list[str]) -> int:
    if argv[:1] != ["install"]:
        print("usage: python -m vexchange.testing.vex_npm install [CACHE_DIR]", file=sys.stderr)
        return 2
    try:
        cli = vex_cli(Path(argv[1]) if len(argv) > 1 else None)
    except VexUnavailable as err:
        print(f"vex_npm: {err}", file=sys.stderr)
        return 1
    print(cli.root)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
