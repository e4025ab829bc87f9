"""``vex inspect``, ``vex validate`` and ``vex verify``: what a store or file holds, and the
proof that it holds what it should (exit 3 when it does not; exit 5 when a signature is valid
but from a key nobody trusts)."""

from __future__ import annotations

import click

from .. import checks
from ..results import SignatureCheck
from ._app import EXIT_INTEGRITY, cli, emit, emit_report
from ._options import aliased


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
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, target: str, receipt: str | None, against: str | None,
           namespaces: tuple[str, ...], signature: str | None, trusted_keys: tuple[str, ...],
           keyring: str | None, as_json: bool) -> None:
    """Prove a target holds what it should (checksum, receipt digests, a source, a signature).

    Exit 3 on any difference (a tampered file); with --signature, exit 5 when everything
    checks out but the key that signed it is not trusted (see --trusted-key).
    """
    report = checks.verify(target, receipt=receipt, against=against, namespaces=namespaces or None,
                           signature=True if signature == "" else signature,
                           trusted_keys=trusted_keys, keyring=keyring)
    emit(report, as_json)
    if not as_json:
        for check in report.checks:
            if isinstance(check, SignatureCheck):
                _show_signature(check)
    failed = [c for c in report.checks if not c.ok]
    if failed and all(isinstance(c, SignatureCheck) and c.status == "unknown-key" for c in failed):
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
