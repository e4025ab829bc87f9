"""``vex inspect``, ``vex validate`` and ``vex verify``: what a store or file holds, and the
proof that it holds what it should (exit 3 when it does not; exit 5 when a signature is valid
but from a key nobody trusts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from ._app import EXIT_INTEGRITY, cli, emit, emit_report, lazy_module
from ._options import aliased

if TYPE_CHECKING:
    from .. import checks, errors, results
    from ..results import SearchCheck, SignatureCheck
else:  # imported when a command first uses them (_app.lazy_module)
    checks = lazy_module("checks")
    errors = lazy_module("errors")
    results = lazy_module("results")


@cli.command(name="inspect")
@click.argument("location")
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(location: str, as_json: bool) -> None:
    """Counts, models, dims, namespaces, sources, time range and sidecar state."""
    emit(checks.inspect(location), as_json)


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def validate(ctx: click.Context, file: str, as_json: bool) -> None:
    """Check every record of a .vmig.jsonl file; exit 3 on any error."""
    emit_report(ctx, checks.validate(file), as_json)


EXIT_UNTRUSTED = 5
"""``vex verify --signature``: the signature is valid but no trusted key made it."""


@cli.command()
@click.argument("target")
@click.option("--receipt", type=click.Path(dir_okay=False), help="Compare with a run's receipt.")
@click.option("--against", metavar="SOURCE", help="Compare record by record with a source.")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS")
@aliased("--signature", "signature", hidden_aliases=("--sigFile",), is_flag=False, flag_value="",
         default=None, metavar="[SIG]",
         help="Check the file's Ed25519 signature (default SIG: Vex's place, x.vmig.sig; give it"
              " after TARGET or as --signature=SIG).")
@click.option("--trusted-key", "trusted_keys", multiple=True, metavar="KEY",
              help="A public key (ed25519:<base64>) or a file of them whose signatures are"
                   " trusted; repeatable. The keyring ($VEX_KEYRING, else"
                   " ~/.config/vexchange/trusted_keys) is read too.")
@click.option("--keyring", type=click.Path(dir_okay=False), help="Read this keyring instead.")
@click.option("--search", is_flag=True,
              help="Check search: probe queries through the target's query API (and --against's),"
                   " overlap@k and recall@k against exact search; exit 3 below the threshold.")
@click.option("--search-k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Results compared per probe query.")
@click.option("--search-probes", type=click.IntRange(min=1), default=100, show_default=True,
              help="Probe queries, sampled from the source (else the target).")
@click.option("--search-threshold", type=click.FloatRange(0, 1), default=0.85, show_default=True,
              help="Recall@k and overlap@k below this fail the check.")
@click.option("--search-seed", type=int, default=0, show_default=True, help="Seed of the probe sample.")
@click.option("--search-probe", type=click.Choice(["vector", "text"]), default="vector", show_default=True,
              help="Probe with sampled records' stored vectors, or their texts embedded again.")
@click.option("--search-vector", default="", metavar="NAME", help="The named vector to search (default:"
                                                                  " the default vector).")
@click.option("--search-embed-model", metavar="MODEL",
              help="Embedder for text probes (default: the model the records carry).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, target: str, receipt: str | None, against: str | None,
           namespaces: tuple[str, ...], signature: str | None, trusted_keys: tuple[str, ...],
           keyring: str | None, search: bool, search_k: int, search_probes: int, search_threshold: float,
           search_seed: int, search_probe: str, search_vector: str, search_embed_model: str | None,
           as_json: bool) -> None:
    """Prove a target holds what it should (checksum, receipt digests, a source, a signature,
    search quality with --search).

    Exit 3 on any difference (a tampered file, search below the threshold); with --signature,
    exit 5 when everything checks out but the key that signed it is not trusted (see
    --trusted-key).
    """
    given = [f"--{name.replace('_', '-')}" for name in ("search_k", "search_probes", "search_threshold",
                                                       "search_seed", "search_probe", "search_vector",
                                                       "search_embed_model")
             if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)]
    if given and not search:
        raise errors.UsageError(f"{', '.join(given)} only shape the search check", hint="add --search")
    options = None
    if search:
        options = checks.SearchOptions(k=search_k, probes=search_probes, threshold=search_threshold,
                                       seed=search_seed, probe="text" if search_probe == "text" else "vector",
                                       vector_name=search_vector, embed_model=search_embed_model)
    report = checks.verify(target, receipt=receipt, against=against, namespaces=namespaces or None,
                           signature=True if signature == "" else signature,
                           trusted_keys=trusted_keys, keyring=keyring, search=options)
    emit(report, as_json)
    if not as_json:
        for check in report.checks:
            if isinstance(check, results.SignatureCheck):
                _show_signature(check)
            if isinstance(check, results.SearchCheck):
                _show_search(check)
    failed = [c for c in report.checks if not c.ok]
    if failed and all(isinstance(c, results.SignatureCheck) and c.status == "unknown-key" for c in failed):
        ctx.exit(EXIT_UNTRUSTED)
    if failed:
        ctx.exit(EXIT_INTEGRITY)


_SHOWN = {"trusted": "VALID, signed by a trusted key", "unknown-key": "VALID, but from an unknown key",
          "invalid": "TAMPERED or not signed as it says"}


def _show_signature(check: SignatureCheck) -> None:
    """The signature's verdict and its reasons in words (Vex prints only VALID/TAMPERED)."""
    click.echo(f"signature {check.signature}: {_SHOWN[check.status]}"
               + (f" ({check.signer})" if check.signer else ""))
    for reason in check.reasons:
        click.echo(f"  - {reason}")
    for record in check.changed_records[:10]:
        click.echo(f"  line {record.line} (record {record.index}"
                   + (f", id {record.id}" if record.id else "") + f"): {record.change}"
                   + (f", {record.detail}" if record.detail else ""))


def _show_search(check: SearchCheck) -> None:
    """The search check's verdict in one line, then why."""
    figures = [f"target recall@{check.k} {check.target.recall}"]
    if check.overlap is not None:
        figures.insert(0, f"overlap@{check.k} {check.overlap}")
    click.echo(f"search ({check.probes} probes, {check.metric}): {'OK' if check.ok else 'BELOW'}"
               f" {check.threshold}: " + ", ".join(figures))
    for reason in check.reasons or check.notes:
        click.echo(f"  - {reason}")
