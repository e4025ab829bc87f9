"""``vex grains``: OMS memory grains and .mg files (docs/formats/oms.md)."""

from __future__ import annotations

from typing import Any

import click

from ._app import cli, emit, emit_report


@cli.group()
def grains() -> None:
    """OMS memory grains and .mg files: inspect, verify, decode, encode."""


@grains.command(name="inspect")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
def grains_inspect(file: str, as_json: bool) -> None:
    """Grain count, types, namespaces and flags of a .mg file."""
    from ..oms.tools import inspect_grains

    emit(inspect_grains(file), as_json)


@grains.command(name="verify")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def grains_verify(ctx: click.Context, file: str, as_json: bool) -> None:
    """Footer checksum and every grain's address; exit 3 on any failure."""
    from ..oms.tools import verify_grains

    emit_report(ctx, verify_grains(file), as_json)


@grains.command(name="decode")
@click.argument("file")
@click.option("--index", type=click.IntRange(min=0), help="Only grain N of a .mg file.")
def grains_decode(file: str, index: int | None) -> None:
    """Print grains as JSON with full field names (one per line)."""
    import orjson

    from ..oms.tools import decode_grains

    for grain in decode_grains(file, index=index):
        click.echo(orjson.dumps(grain).decode())


SHAPE_CHOICES = ["conversation", "tool_call", "state", "runbook", "sensor", "task", "mem0", "langgraph",
                 "letta_block", "letta_agent", "letta_tool", "letta_message"]
"""``vexchange.oms.shapes.SHAPE_NAMES``, written out so ``vex --help`` loads no OMS code (a test
holds the two equal)."""


@grains.command(name="conformance")
@click.option("--json", "as_json", is_flag=True)
def grains_conformance(as_json: bool) -> None:
    """The OMS version and conformance level vexchange declares (§17)."""
    from ..oms import conformance

    emit(conformance(), as_json)


@grains.command(name="encode")
@click.argument("input")
@click.option("--output", "-o", required=True, help="A .mg file, or a file for one raw blob.")
@click.option("--shape", type=click.Choice(SHAPE_CHOICES),
              help="The input is a JSONL log of this shape (docs/formats/oms.md).")
@click.option("--namespace", help="Namespace of every grain (overrides the lines').")
def grains_encode(input: str, output: str, shape: str | None, namespace: str | None) -> None:
    """Build canonical grains from JSON (full field names) or a shaped log; print addresses."""
    from ..oms.tools import encode_grains

    for address in encode_grains(input, output, shape=shape, namespace=namespace):
        click.echo(address)


_KEY_HELP = "The master key: 32 raw bytes or 64 hex digits (else $VEX_OMS_KEY)."


def _key_option(function: Any) -> Any:
    return click.option("--key-file", type=click.Path(dir_okay=False), help=_KEY_HELP)(function)


@grains.command(name="encrypt")
@click.argument("input")
@click.option("--output", "-o", required=True, help="The encrypted file (docs/formats/oms-level3.md).")
@_key_option
@click.option("--json", "as_json", is_flag=True)
def grains_encrypt(input: str, output: str, key_file: str | None, as_json: bool) -> None:
    """Seal a .mg file with AES-256-GCM under the master key (streamed, in chunks)."""
    from ..oms.l3.tools import encrypt_grains

    emit(encrypt_grains(input, output, key_file=key_file), as_json)


@grains.command(name="decrypt")
@click.argument("input")
@click.option("--output", "-o", required=True, help="The .mg file to write.")
@_key_option
@click.option("--json", "as_json", is_flag=True)
def grains_decrypt(input: str, output: str, key_file: str | None, as_json: bool) -> None:
    """Open a file made by vex grains encrypt; exit 3 if it was edited or cut short."""
    from ..oms.l3.tools import decrypt_grains

    emit(decrypt_grains(input, output, key_file=key_file), as_json)


@grains.group(name="store")
def grains_store() -> None:
    """An OMS Level 3 store: encrypted, indexed, audited (docs/formats/oms-level3.md)."""


@grains_store.command(name="init")
@click.argument("store")
@_key_option
@click.option("--new-key", is_flag=True, help="Write a new random key to --key-file (never overwritten).")
@click.option("--preset", type=click.Choice(["none", "gdpr", "hipaa", "ccpa"]), default="none",
              show_default=True, help="Compliance preset checked on every operation.")
@click.option("--directory", is_flag=True, help="One envelope file per grain in a directory.")
@click.option("--json", "as_json", is_flag=True)
def store_init_command(store: str, key_file: str | None, new_key: bool, preset: str, directory: bool,
                       as_json: bool) -> None:
    """Create a store (a SQLite file, or with --directory a directory)."""
    from ..oms.l3.tools import store_init

    emit(store_init(store, key_file=key_file, preset=preset, directory=directory, new_key=new_key), as_json)


@grains_store.command(name="put")
@click.argument("store")
@click.argument("input")
@_key_option
@click.option("--json", "as_json", is_flag=True)
def store_put_command(store: str, input: str, key_file: str | None, as_json: bool) -> None:
    """Put the grains of a .mg file (or one blob)."""
    from ..oms.l3.tools import store_put

    emit(store_put(store, input, key_file=key_file), as_json)


@grains_store.command(name="get")
@click.argument("store")
@click.argument("address")
@_key_option
def store_get_command(store: str, address: str, key_file: str | None) -> None:
    """Print one grain as JSON, with its index-layer state."""
    import orjson

    from ..oms.l3.tools import store_get

    click.echo(orjson.dumps(store_get(store, address, key_file=key_file)).decode())


@grains_store.command(name="query")
@click.argument("store")
@_key_option
@click.option("--subject")
@click.option("--relation")
@click.option("--object", "object_")
@click.option("--namespace")
@click.option("--user-id")
@click.option("--type", "type_")
@click.option("--tag")
@click.option("--text", help="Words that must all occur (full-text search).")
@click.option("--all-versions", is_flag=True, help="Superseded and contradicted grains too.")
@click.option("--limit", type=click.IntRange(min=1))
def store_query_command(store: str, key_file: str | None, subject: str | None, relation: str | None,
                        object_: str | None, namespace: str | None, user_id: str | None, type_: str | None,
                        tag: str | None, text: str | None, all_versions: bool, limit: int | None) -> None:
    """Grains matching every filter, one JSON line each (equality via blind tokens)."""
    import orjson

    from ..oms.l3.tools import store_query

    for grain in store_query(store, key_file=key_file, subject=subject, relation=relation, object=object_,
                             namespace=namespace, user_id=user_id, type=type_, tag=tag, text=text,
                             all_versions=all_versions, limit=limit):
        click.echo(orjson.dumps(grain).decode())


@grains_store.command(name="supersede")
@click.argument("store")
@click.argument("old_address")
@click.argument("input")
@_key_option
@click.option("--justification", help="For a soft_locked grain, when the new grain carries none.")
@click.option("--json", "as_json", is_flag=True)
def store_supersede_command(store: str, old_address: str, input: str, key_file: str | None,
                            justification: str | None, as_json: bool) -> None:
    """Supersede a grain with the one grain in INPUT (Level 2 policy applies)."""
    from ..oms.l3.tools import store_supersede

    emit(store_supersede(store, old_address, input, key_file=key_file, justification=justification), as_json)


@grains_store.command(name="contradict")
@click.argument("store")
@click.argument("address")
@click.argument("input")
@_key_option
@click.option("--justification")
@click.option("--json", "as_json", is_flag=True)
def store_contradict_command(store: str, address: str, input: str, key_file: str | None,
                             justification: str | None, as_json: bool) -> None:
    """Record that the grain in INPUT contradicts ADDRESS (Level 2 policy applies)."""
    from ..oms.l3.tools import store_contradict

    emit(store_contradict(store, address, input, key_file=key_file, justification=justification), as_json)


@grains_store.command(name="erase")
@click.argument("store")
@_key_option
@click.option("--user-id", help="Crypto-erase every grain of this data subject and destroy their key.")
@click.option("--address", help="Delete one grain (compliance erasure).")
@click.option("--json", "as_json", is_flag=True)
def store_erase_command(store: str, key_file: str | None, user_id: str | None, address: str | None,
                        as_json: bool) -> None:
    """Compliance erasure; refused under a litigation hold or a retention rule."""
    from ..oms.l3.tools import store_erase

    emit(store_erase(store, key_file=key_file, user_id=user_id, address=address), as_json)


@grains_store.command(name="rotate")
@click.argument("store")
@_key_option
@click.option("--new-key-file", required=True, type=click.Path(dir_okay=False),
              help="The new master key (made there first with --create).")
@click.option("--create", "create_key", is_flag=True, help="Write a new random key to --new-key-file.")
@click.option("--json", "as_json", is_flag=True)
def store_rotate_command(store: str, key_file: str | None, new_key_file: str, create_key: bool,
                         as_json: bool) -> None:
    """Re-wrap every key under a new master key (no grain is re-encrypted)."""
    from ..oms.l3.tools import store_rotate

    emit(store_rotate(store, key_file=key_file, new_key_file=new_key_file, create_key=create_key), as_json)


@grains_store.group(name="audit")
def store_audit() -> None:
    """The store's hash-chained audit trail."""


@store_audit.command(name="verify")
@click.argument("store")
@_key_option
@click.option("--expect-head", help="The head a previous verify printed: detects a rolled-back store.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def store_audit_verify_command(ctx: click.Context, store: str, key_file: str | None,
                               expect_head: str | None, as_json: bool) -> None:
    """Check every entry's chain value; exit 3 on an edited, removed, reordered or cut entry."""
    from ..oms.l3.tools import store_audit_verify

    emit_report(ctx, store_audit_verify(store, key_file=key_file, expect_head=expect_head), as_json)
