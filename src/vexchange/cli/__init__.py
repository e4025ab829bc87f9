"""``vex``: a thin command line over the library. Each command calls one public function.

The commands live by group: run.py (export, import, migrate), check.py (inspect, validate,
verify), pack.py (pack, search, feedback, micropack), grains.py, adapter.py, info.py
(connectors, demo), sign.py (sign), convert.py (convert), backup.py (backup, sync),
plan.py (plan, doctor), ui.py (ui);
_options.py makes the options of every command that runs from ``RunOptions``. This module
is the entry point (``main``) and the ``cli`` group they join (_app.py: a lazy group, which
imports a command's module only when that command runs, so that ``vex --help`` starts in
less time than the published Vex).

Exit codes (docs/errors.md): 0 success; 1 a run failed or stopped (resumable); 2 usage error;
3 integrity failure (validate found errors, verify found differences, checksum mismatch);
4 finished but records were skipped and --allow-skips was not given; 5 vex verify --signature:
a valid signature from an unknown key; 130 interrupted.
"""

from __future__ import annotations

import shlex
import sys

import click

from ._app import EXIT_SKIPPED, cli

__all__ = ["EXIT_SKIPPED", "cli", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and turns errors into messages and exit codes (no tracebacks)."""
    try:
        code = cli.main(args=argv, prog_name="vex", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as done:
        return int(done.exit_code or 0)
    except click.ClickException as err:
        err.show()
        return 2
    except click.exceptions.Abort as err:  # click turns Ctrl-C into Abort, keeping the cause
        cause = err.__cause__ if isinstance(err.__cause__, KeyboardInterrupt) else None
        click.echo(_interrupted_message(cause, sys.argv[1:] if argv is None else argv)
                   if cause is not None else "vex: aborted", err=True)
        return 130
    except KeyboardInterrupt as err:
        click.echo("\n" + _interrupted_message(err, sys.argv[1:] if argv is None else argv), err=True)
        return 130
    except Exception as err:
        return _failed(err)


def _failed(err: Exception) -> int:
    """A VexError as its message and exit code (a MigrationError with its checkpoint); any
    other error goes on as it is (a bug: its traceback is wanted). The error classes are
    imported here, not with the CLI, which starts without them."""
    from ..errors import MigrationError, VexError, exit_code_for

    if not isinstance(err, VexError):
        raise err
    click.echo(f"vex: error: {err}", err=True)
    if isinstance(err, MigrationError) and err.receipt is not None and err.receipt.checkpoint_file:
        click.echo(f"  checkpoint: {err.receipt.checkpoint_file}", err=True)
    return exit_code_for(err)


_SECRET_FLAGS = ("--source-secret", "--target-secret")


def _interrupted_message(err: KeyboardInterrupt, argv: list[str]) -> str:
    """What Ctrl-C stopped: how much was written, where the checkpoint is, and the command that
    continues (secret values shown as ***: give them again, or use VEX_* variables)."""
    receipt = getattr(err, "receipt", None)
    if receipt is None:
        return "vex: interrupted"
    lines = [f"vex: interrupted after {receipt.counts.written:,} records were written"
             f" ({receipt.counts.read:,} read, {receipt.counts.skipped_total:,} skipped);"
             f" receipt: {receipt.receipt_file}"]
    if not receipt.checkpoint_file:
        lines.append("  nothing was checkpointed yet; rerun the same command to start again")
        return "\n".join(lines)
    shown, hidden = [], False
    words = iter(argv)
    for word in words:
        flag, eq, value = word.partition("=")
        if flag in _SECRET_FLAGS:
            hidden = True
            if eq:
                shown.append(f"{flag}={value.partition('=')[0]}=***")
            else:
                shown.append(word)
                name, _, _ = next(words, "").partition("=")
                shown.append(f"{name}=***" if name else "***")
            continue
        shown.append(word)
    if "--resume" not in shown:
        shown.append("--resume")
    lines.append(f"  checkpoint: {receipt.checkpoint_file}")
    lines.append("  to continue: vex " + shlex.join(shown))
    if hidden:
        lines.append("  (secret values are shown as ***: give them again, or set VEX_* variables)")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
