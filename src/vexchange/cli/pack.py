"""``vex pack`` (VectorPack bundles), and the commands over a cartridge or a pack: ``vex
search``, ``vex feedback`` and ``vex micropack``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._app import cli, emit, emit_report, lazy_module
from ._options import aliased, run_options
from ._running import run_command

if TYPE_CHECKING:
    from .. import api, errors
    from .. import spec as spec_module
else:  # imported when a command first uses them (_app.lazy_module)
    api = lazy_module("api")
    errors = lazy_module("errors")
    spec_module = lazy_module("spec")


@cli.group()
def pack() -> None:
    """VectorPack bundles: create, verify, unpack (docs/formats/vectorpack.md)."""


@pack.command(name="create")
@click.argument("source_url")
@click.argument("directory")
@run_options(lazy=True)
@click.pass_context
def pack_create(ctx: click.Context, /, source_url: str, directory: str, **options: Any) -> None:
    """Write SOURCE's records as a VectorPack DIRECTORY (migrate into vectorpack://DIR)."""
    run_command(ctx, api.migrate, source_url, spec_module.StoreSpec("vectorpack", directory), **options)


@pack.command(name="unpack")
@click.argument("directory")
@click.argument("target_url")
@run_options(lazy=True)
@click.pass_context
def pack_unpack(ctx: click.Context, /, directory: str, target_url: str, **options: Any) -> None:
    """Load a VectorPack's records into TARGET (migrate from vectorpack://DIR)."""
    run_command(ctx, api.migrate, spec_module.StoreSpec("vectorpack", directory), target_url, **options)


@pack.command(name="reindex")
@click.argument("directory")
@click.option("--ann", type=click.Choice(["usearch"]), default=None,
              help="Also build an approximate (HNSW) index; needs vexchange[usearch].")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="Threads for --ann (0: every core); more than 1 builds faster, but not to the same bytes.")
@click.option("--json", "as_json", is_flag=True)
def pack_reindex(directory: str, ann: str | None, threads: int, as_json: bool) -> None:
    """(Re)build a pack's derived indexes (a flat index per vector, and with --ann an HNSW
    graph), listed in its manifest."""
    from ..pack.vectorpack import reindex

    emit(reindex(directory, ann=ann, threads=threads), as_json)


@pack.command(name="verify")
@click.argument("directory")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pack_verify(ctx: click.Context, directory: str, as_json: bool) -> None:
    """Check every file's hash, the layout, and the cartridge; exit 3 on any problem."""
    from ..pack.vectorpack import verify_pack

    emit_report(ctx, verify_pack(directory), as_json)


def _cartridge_path(location: str, *, pack: bool = False) -> str:
    spec = spec_module.StoreSpec.parse(location)
    if spec.path and (spec.scheme == "cartridge" or (pack and spec.scheme == "vectorpack")):
        return spec.path
    raise errors.UsageError(f"{location!r} is not a cartridge; give cartridge:///path/memory.db"
                     + (" or vectorpack:///path/memory.vpack" if pack else ""))


def _vector_file(path: str | None) -> list[float] | None:
    if path is None:
        return None
    import orjson

    try:
        values = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as err:
        raise errors.UsageError(f"--vector-file {path}: {err}") from None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        raise errors.UsageError(f"--vector-file {path} must hold a JSON list of numbers")
    return [float(v) for v in values]


@cli.command()
@click.argument("cartridge")
@click.option("--query", help="Text to search for (embedded with --embed-model).")
@click.option("--keyword", help="Keyword search over the text (FTS5) instead.")
@click.option("--vector-file", type=click.Path(dir_okay=False), help="A JSON list of numbers as the query.")
@click.option("--embed-model", metavar="MODEL", help="Embedder for --query (the cartridge's model).")
@aliased("--vector-name", "vector_name", hidden_aliases=["--vector"], default="",
         help="Which named vector to search [default: the default].")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--w-similarity", type=float, default=1.0, show_default=True)
@click.option("--w-elo", type=float, default=0.1, show_default=True)
@click.option("--w-recency", type=float, default=0.1, show_default=True)
@click.option("--half-life-days", type=click.FloatRange(min=0.001), default=30.0, show_default=True)
@click.option("--exact", is_flag=True, help="Scan every vector even when the pack has a usearch index.")
@click.option("--json", "as_json", is_flag=True)
def search(cartridge: str, query: str | None, keyword: str | None, vector_file: str | None,
           embed_model: str | None, vector_name: str, k: int, w_similarity: float, w_elo: float,
           w_recency: float, half_life_days: float, exact: bool, as_json: bool) -> None:
    """Ranked search over a cartridge or a VectorPack: similarity modulated by Elo and recency."""
    from ..pack.search import Weights, search as run_search

    hits = run_search(_cartridge_path(cartridge, pack=True), query=query, keyword=keyword,
                      vector=_vector_file(vector_file), k=k, embed_model=embed_model,
                      vector_name=vector_name,
                      weights=Weights(w_similarity, w_elo, w_recency, half_life_days), exact=exact)
    if as_json:
        emit(hits, as_json=True)
        return
    for hit in hits:
        text = (hit["text"] or "").replace("\n", " ")
        where = f"{hit['namespace'] or '-'}/{hit['id']}"
        click.echo(f"{hit['rank']:>3}  {hit['score']:.4f}  {where}  {text[:80]}")


@cli.command()
@click.argument("cartridge")
@click.argument("record_id")
@click.option("--namespace", help="The record's namespace.")
@click.option("--helpful/--not-helpful", required=True, help="Whether the memory helped.")
@click.option("--note", help="Why, for the receipt.")
@click.option("--json", "as_json", is_flag=True)
def feedback(cartridge: str, record_id: str, namespace: str | None, helpful: bool, note: str | None,
             as_json: bool) -> None:
    """Record that a memory was used and helped (or not): its Elo moves; a receipt is written."""
    from ..pack.search import feedback as run_feedback

    emit(run_feedback(_cartridge_path(cartridge), record_id, namespace=namespace, helpful=helpful,
                      note=note), as_json)


@cli.command()
@click.argument("source_url")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False))
@click.option("--query", help="Text to select for (embedded with --embed-model).")
@click.option("--vector-file", type=click.Path(dir_okay=False), help="A JSON list of numbers as the query.")
@click.option("--embed-model", metavar="MODEL")
@aliased("--vector-name", "vector_name", hidden_aliases=["--vector"], default="",
         help="Which named vector [default: the default].")
@click.option("--k", type=click.IntRange(min=1), default=20, show_default=True)
@aliased("--quantization", "quantization", hidden_aliases=["--quantize"],
         type=click.Choice(["int8", "float16"]), default="int8", show_default=True)
@click.option("--namespace", "namespaces", multiple=True, metavar="NS")
@click.option("--json", "as_json", is_flag=True)
def micropack(source_url: str, output: str, query: str | None, vector_file: str | None,
              embed_model: str | None, vector_name: str, k: int, quantization: str,
              namespaces: tuple[str, ...], as_json: bool) -> None:
    """Write the top-K memories for a query as a token-friendly micro-pack (JSONL)."""
    from ..pack.micropack import micropack as run_micropack

    header = run_micropack(source_url, output, query=query, vector=_vector_file(vector_file), k=k,
                           embed_model=embed_model, vector_name=vector_name, quantization=quantization,
                           namespaces=list(namespaces) or None)
    emit(header, as_json)
