"""``vex sign`` and ``vex keygen`` (and ``vex verify --signature`` in check.py): Ed25519
signatures over a .vmig.jsonl file, compatible with the published Vex's ``.vmig.sig``
(docs/signing.md). Each command calls one function of ``vexchange.signing``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ._app import cli, emit, lazy_module
from ._options import aliased

if TYPE_CHECKING:
    from .. import signing
else:  # imported when a command first uses it (_app.lazy_module)
    signing = lazy_module("signing")


@cli.command()
@click.argument("file")
@aliased("--key", "key", hidden_aliases=("--keyFile",), metavar="KEY",
         help="The private key file (vex keygen; a Vex .vmig.key works too). Default:"
              " $VEX_SIGNING_KEY, else ~/.config/vexchange/signing.key.")
@click.option("--signature", metavar="SIG",
              help="Where the signature goes (a name ending in .sig). Default: Vex's place,"
                   " x.vmig.jsonl -> x.vmig.sig.")
@click.option("--json", "as_json", is_flag=True)
def sign(file: str, key: str | None, signature: str | None, as_json: bool) -> None:
    """Sign a .vmig.jsonl file: a .vmig.sig beside it that Vex's `vex verify` accepts too.

    No key is ever made here or written beside the file (Vex does both): make one once with
    `vex keygen`, and give its public key (shown here) to whoever verifies.
    """
    emit(signing.sign(file, key, signature=signature), as_json)


@cli.command()
@click.argument("path", required=False)
@click.option("--public-of", metavar="KEY",
              help="Make nothing: show the public key of this private key file (e.g. a Vex .vmig.key).")
@click.option("--json", "as_json", is_flag=True)
def keygen(path: str | None, public_of: str | None, as_json: bool) -> None:
    """Make an Ed25519 key pair for `vex sign`: PATH (private, mode 0600) and PATH.pub.

    PATH defaults to $VEX_SIGNING_KEY, else ~/.config/vexchange/signing.key. An existing
    file is never overwritten. The public key (ed25519:...) is what `vex verify --trusted-key`
    takes.
    """
    emit(signing.keygen(path, public_of=public_of), as_json)
