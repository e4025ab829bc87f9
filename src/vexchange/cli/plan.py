"""``vex plan`` and ``vex doctor``: what a move will cost and change, and what is wrong with a
source, before anything is written (docs/plan.md).

``vex plan`` takes every option ``vex migrate`` takes (the same ``run_options()``), so a plan
is of exactly the command the user will run; it exits 4, as that run would, when records would
be refused and ``--allow-skips`` is not given. ``vex doctor`` takes the run options that choose
and read records, and exits 3 when it finds something a run would refuse or lose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ._app import EXIT_SKIPPED, PendingParams, cli, emit, emit_report, lazy_module
from ._options import run_option_param, run_options, source_secret_option

if TYPE_CHECKING:
    from .. import doctor as doctor_module
    from .. import errors
    from .. import plan as plan_module
else:  # imported when a command first uses them (_app.lazy_module): the engine, numpy
    doctor_module = lazy_module("doctor")
    errors = lazy_module("errors")
    plan_module = lazy_module("plan")

F = TypeVar("F", bound=Callable[..., Any])

PLAN_SAMPLE = 2000
DOCTOR_SAMPLE = 1000
"""``vexchange.plan_results.PLAN_SAMPLE`` and ``DOCTOR_SAMPLE``, written out so that the help of
plan and doctor imports no typed results (a test holds them equal)."""

_DOCTOR_OPTIONS = ("namespaces", "limit", "since", "until", "batch_size", "retries", "verify")
"""The run options that say which records doctor reads and how (``doctor``'s parameters)."""


def _doctor_options(fn: F) -> F:
    """The run options of ``_DOCTOR_OPTIONS``, made when doctor's parameters are first read."""

    def made() -> list[click.Parameter]:
        from ..engine.options import option_fields

        return [run_option_param(f, info, annotation) for f, info, annotation in option_fields()
                if f.name in _DOCTOR_OPTIONS]

    fn.__click_params__ = [*getattr(fn, "__click_params__", []), PendingParams(made)]  # type: ignore[attr-defined]
    return fn


@cli.command()
@click.argument("source")
@click.argument("target")
@click.option("--sample", type=click.IntRange(min=1), default=PLAN_SAMPLE, show_default=True,
              help="Records in the timed sample into a throwaway copy of a file target (at least"
                   " four pages of the batch size).")
@click.option("--scratch", is_flag=True,
              help="Time the sample on a server target too, in a throwaway table dropped afterwards"
                   " (pgvector; needs the right to create tables). Without it a server is never"
                   " written to and its write side is its measured rate.")
@run_options(lazy=True)
@click.pass_context
def plan(ctx: click.Context, /, source: str, target: str, sample: int, scratch: bool, as_json: bool,
         quiet: bool, receipt: str | None, rejects: str | None, **options: Any) -> None:
    """What vex migrate SOURCE TARGET would do and cost, writing nothing to TARGET.

    Counts, sizes, the estimated time (a timed sample of the real pipeline, or the store's
    measured rate), disk and memory, and what would be refused or changed. Takes migrate's
    options; exit 4 when records would be refused and --allow-skips is not given.
    """
    if receipt or rejects:
        raise errors.UsageError("vex plan writes no receipt and no rejects file; give --receipt and"
                         " --rejects to vex migrate")
    report = plan_module.plan(source, target, sample=sample, scratch=scratch, **options)
    if not quiet or as_json:
        emit(report, as_json)
    if report.refused and not options.get("allow_skips"):
        ctx.exit(EXIT_SKIPPED)


@cli.command()
@click.argument("source")
@click.option("--sample", type=click.IntRange(min=2), default=DOCTOR_SAMPLE,
              show_default=True, help="Vectors per size compared pairwise for near duplicates.")
@_doctor_options
@source_secret_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.pass_context
def doctor(ctx: click.Context, /, source: str, sample: int, as_json: bool, **options: Any) -> None:
    """What is wrong with a source: mixed models or sizes, zero, NaN-prone or unnormalised
    vectors, duplicate ids, missing text, metric mismatches, near duplicates.

    Exit 3 when a finding is an error (something a run would refuse or lose).
    """
    emit_report(ctx, doctor_module.doctor(source, sample=sample, **options), as_json)
