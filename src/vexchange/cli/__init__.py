"""``vex``: a thin command line over the library. Each command calls one public function.

Exit codes (docs/errors.md): 0 success; 1 a run failed or stopped (resumable); 2 usage error;
3 integrity failure (validate found errors, verify found differences, checksum mismatch);
4 finished but records were skipped and --allow-skips was not given; 130 interrupted.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from .. import api, checks
from .._version import __version__
from ..connectors import _registry
from ..engine.receipt import Receipt
from ..errors import MigrationError, UsageError, VexError, exit_code_for
from ..spec import StoreSpec
from ._render import CliProgress, print_mapping, print_summary

F = TypeVar("F", bound=Callable[..., Any])

EXIT_SKIPPED = 4
_FILE_CONNECTORS = {"vmig", "jsonl"}


def _secrets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            # never echo what was given: without its NAME= it may be the secret itself
            raise click.BadParameter("expected NAME=VALUE, e.g. api_key=...; the value given has no NAME=")
        out[name.strip().lower()] = value
    return out


def _run_options(fn: F) -> F:
    decorators = [
        click.option("--namespace", "namespaces", multiple=True, metavar="NS",
                     help="Only records in this namespace (repeatable)."),
        click.option("--limit", type=click.IntRange(min=0), help="Stop after this many records."),
        click.option("--since", help="Only records created at or after this time (ISO-8601 or epoch)."),
        click.option("--until", help="Only records created before this time (ISO-8601 or epoch)."),
        click.option("--batch-size", type=click.IntRange(min=1),
                     help="Records per page and per write [default: the target's preferred"
                          " size, else 500]."),
        click.option("--retries", type=click.IntRange(min=1), default=3, show_default=True,
                     help="Attempts per batch on transient failures (backoff with jitter)."),
        click.option("--dry-run", is_flag=True, help="Read, check and count; write nothing."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint."),
        click.option("--verify-first", is_flag=True,
                     help="Check the source against its checksum, footer or content ids before"
                          " writing anything [default: while reading, failing the run at the end]."),
        click.option("--no-verify", "verify", is_flag=True, flag_value=False, default=True,
                     help="Read the source without checking it (recorded in the receipt)."),
        click.option("--allow-skips", is_flag=True,
                     help="Exit 0 even when records were skipped (they are still in the rejects file)."),
        click.option("--receipt", type=click.Path(dir_okay=False), help="Receipt path [default: <target>.receipt.json]."),
        click.option("--rejects", type=click.Path(dir_okay=False), help="Rejects path [default: <target>.rejects.jsonl]."),
        click.option("--metric", type=click.Choice(["cosine", "dot", "euclidean", "manhattan"]),
                     help="Distance a target creates its collection with, when the source"
                          " declares none [default: cosine]."),
        click.option("--source-secret", "source_secrets", multiple=True, metavar="NAME=VALUE",
                     callback=_secrets, help="A secret for the source (api_key, password, token);"
                     " prefer VEX_<CONNECTOR>_<NAME> variables, which stay out of process lists."),
        click.option("--target-secret", "target_secrets", multiple=True, metavar="NAME=VALUE",
                     callback=_secrets, help="A secret for the target, like --source-secret."),
        click.option("--reembed", type=click.Choice(["all", "missing"]),
                     help="Compute default vectors from each record's text: for every record, or"
                          " only those without one (needs --embed-model)."),
        click.option("--embed-model", metavar="MODEL",
                     help="minilm, static, st:PATH, openai+URL?model=NAME or ollama+URL?model=NAME."),
        click.option("--keep-old-vector", metavar="NAME",
                     help="Keep a replaced vector beside the new one, as a named vector."),
        click.option("--on-dims-mismatch", type=click.Choice(["skip", "reembed", "adapt"]),
                     default="skip", show_default=True,
                     help="A vector whose size the target does not hold: skip the record"
                          " (counted), re-embed it from its text, or translate it with --adapter."),
        click.option("--adapter", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Translate default vectors with this adapter (vex adapter train)."),
        click.option("--force-adapter", is_flag=True,
                     help="Use an adapter whose measured quality is below the thresholds."),
        click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON on stdout."),
        click.option("--quiet", is_flag=True, help="No progress bar and no summary."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="vex")
def cli() -> None:
    """vexchange: move agent and vector memory between stores and files, with proof.

    \b
    vex export  --from vektor --db memory.db --output memory.vmig.jsonl
    vex import  --from memory.vmig.jsonl --to vektor --db copy.db
    vex migrate vektor:///data/memory.db other.vmig.jsonl
    vex verify  other.vmig.jsonl --against vektor:///data/memory.db
    """


def _location(value: str | None, *, db: str | None, path: str | None, role: str) -> str | StoreSpec:
    """A URL or path as given, or a connector name completed by --db / --file / --output."""
    if not value:
        raise UsageError(f"give the {role}")
    if ":" in value or "/" in value or "." in value:
        return value
    if value == "vektor":
        if not db:
            raise UsageError(f"the vektor {role} needs --db PATH")
        return StoreSpec("vektor", db)
    if value in _FILE_CONNECTORS:
        if not path:
            flag = "--file" if role == "source" else "--output"
            raise UsageError(f"the {value} {role} needs {flag} PATH")
        return StoreSpec("vmig", path)
    _registry.get(value)
    raise UsageError(f"give {value} as a URL, e.g. {value}://HOST/COLLECTION")


def _run(ctx: click.Context, call: Callable[..., Receipt], *args: Any, as_json: bool,
         quiet: bool, **options: Any) -> None:
    options["since"] = options.get("since") or None
    options["until"] = options.get("until") or None
    progress = None if quiet or as_json else CliProgress()
    receipt = call(*args, progress=progress, **options)
    if as_json:
        click.echo(orjson.dumps(receipt.to_dict(), option=orjson.OPT_INDENT_2).decode())
    elif not quiet:
        print_summary(receipt)
    if receipt.counts.skipped_total and not options.get("allow_skips"):
        ctx.exit(EXIT_SKIPPED)


@cli.command()
@click.argument("source_url", required=False)
@click.option("--from", "from_", metavar="CONNECTOR|URL", help="Source: a connector name or URL.")
@click.option("--db", help="Database path for the vektor connector.")
@click.option("--output", "-o", required=True, help="Output file (.vmig.jsonl).")
@_run_options
@click.pass_context
def export(ctx: click.Context, /, source_url: str | None, from_: str | None, db: str | None,
           output: str, **options: Any) -> None:
    """Write a store's records to a .vmig.jsonl file with its sidecar and a receipt."""
    source = _location(source_url or from_, db=db, path=None, role="source")
    _run(ctx, api.export, source, output, **options)


@cli.command(name="import")
@click.argument("input_file", required=False)
@click.option("--from", "from_", metavar="FILE", help="The .vmig.jsonl file to import.")
@click.option("--to", "to", metavar="CONNECTOR|URL", required=True, help="Target store.")
@click.option("--db", help="Database path for the vektor connector.")
@click.option("--output", help="Output file when the target is a file connector.")
@_run_options
@click.pass_context
def import_(ctx: click.Context, /, input_file: str | None, from_: str | None, to: str,
            db: str | None, output: str | None, **options: Any) -> None:
    """Load a .vmig.jsonl file into a store."""
    source = input_file or from_
    if not source:
        raise UsageError("give the file to import: vex import --from FILE --to TARGET")
    target = _location(to, db=db, path=output, role="target")
    _run(ctx, api.import_, source, target, **options)


@cli.command()
@click.argument("source_url", required=False)
@click.argument("target_url", required=False)
@click.option("--from", "from_", metavar="CONNECTOR|URL")
@click.option("--to", "to", metavar="CONNECTOR|URL")
@click.option("--db", help="Database path for the side that is a vektor connector.")
@click.option("--file", "file_", help="Input file when the source is a file connector.")
@click.option("--output", help="Output file when the target is a file connector.")
@_run_options
@click.pass_context
def migrate(ctx: click.Context, /, source_url: str | None, target_url: str | None,
            from_: str | None, to: str | None, db: str | None, file_: str | None,
            output: str | None, **options: Any) -> None:
    """Copy records from one store to another: vex migrate SOURCE_URL TARGET_URL."""
    src, dst = source_url or from_, target_url or to
    if src == "vektor" and dst == "vektor":
        raise UsageError("both sides are vektor: give two URLs, "
                         "vex migrate vektor:///a.db vektor:///b.db")
    source = _location(src, db=db, path=file_, role="source")
    target = _location(dst, db=db, path=output, role="target")
    _run(ctx, api.migrate, source, target, **options)


@cli.command(name="inspect")
@click.argument("location")
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(location: str, as_json: bool) -> None:
    """Counts, models, dims, namespaces, sources, time range and sidecar state."""
    report = checks.inspect(location)
    _emit(report, as_json)


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def validate(ctx: click.Context, file: str, as_json: bool) -> None:
    """Check every record of a .vmig.jsonl file; exit 3 on any error."""
    report = checks.validate(file)
    _emit_report(ctx, report, as_json)


@cli.command()
@click.argument("target")
@click.option("--receipt", type=click.Path(dir_okay=False), help="Compare with a run's receipt.")
@click.option("--against", metavar="SOURCE", help="Compare record by record with a source.")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, target: str, receipt: str | None, against: str | None,
           namespaces: tuple[str, ...], as_json: bool) -> None:
    """Prove a target holds what it should (checksum, receipt digests, or a source)."""
    report = checks.verify(target, receipt=receipt, against=against, namespaces=namespaces or None)
    _emit_report(ctx, report, as_json)


@cli.group()
def grains() -> None:
    """OMS memory grains and .mg files: inspect, verify, decode, encode."""


@grains.command(name="inspect")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
def grains_inspect(file: str, as_json: bool) -> None:
    """Grain count, types, namespaces and flags of a .mg file."""
    from ..oms.tools import inspect_grains

    _emit(inspect_grains(file), as_json)


@grains.command(name="verify")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def grains_verify(ctx: click.Context, file: str, as_json: bool) -> None:
    """Footer checksum and every grain's address; exit 3 on any failure."""
    from ..oms.tools import verify_grains

    report = verify_grains(file)
    _emit_report(ctx, report, as_json)


@grains.command(name="decode")
@click.argument("file")
@click.option("--index", type=click.IntRange(min=0), help="Only grain N of a .mg file.")
def grains_decode(file: str, index: int | None) -> None:
    """Print grains as JSON with full field names (one per line)."""
    from ..oms.tools import decode_grains

    for grain in decode_grains(file, index=index):
        click.echo(orjson.dumps(grain).decode())


@grains.command(name="encode")
@click.argument("input")
@click.option("--output", "-o", required=True, help="A .mg file, or a file for one raw blob.")
@click.option("--shape", type=click.Choice(["conversation", "tool_call", "state", "runbook",
                                            "sensor", "task"]),
              help="The input is a JSONL log of this shape (docs/formats/oms.md).")
@click.option("--namespace", help="Namespace of every grain (overrides the lines').")
def grains_encode(input: str, output: str, shape: str | None, namespace: str | None) -> None:
    """Build canonical grains from JSON (full field names) or a shaped log; print addresses."""
    from ..oms.tools import encode_grains

    for address in encode_grains(input, output, shape=shape, namespace=namespace):
        click.echo(address)


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Work here [default: a new temp dir].")
@click.option("--records", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def demo(ctx: click.Context, directory: str | None, records: int, as_json: bool) -> None:
    """Build a demo VEKTOR database, export it, import it into a new one, and verify the copy."""
    from ..demo import demo as run_demo

    report = run_demo(directory, records=records, progress=None if as_json else CliProgress())
    _emit(report, as_json)
    if not report["verified"]:
        ctx.exit(3)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def connectors(as_json: bool) -> None:
    """List connectors and whether their extras are installed."""
    rows = {}
    for name, entry in _registry.available().items():
        missing = _registry.missing_requirement(entry)
        rows[name] = "installed" if not missing else f'missing: pip install "vexchange[{entry.extra or name}]"'
    _emit(rows, as_json)


@cli.group()
def pack() -> None:
    """VectorPack bundles: create, verify, unpack (docs/formats/vectorpack.md)."""


@pack.command(name="create")
@click.argument("source_url")
@click.argument("directory")
@_run_options
@click.pass_context
def pack_create(ctx: click.Context, /, source_url: str, directory: str, **options: Any) -> None:
    """Write SOURCE's records as a VectorPack DIRECTORY (migrate into vectorpack://DIR)."""
    _run(ctx, api.migrate, source_url, StoreSpec("vectorpack", directory), **options)


@pack.command(name="unpack")
@click.argument("directory")
@click.argument("target_url")
@_run_options
@click.pass_context
def pack_unpack(ctx: click.Context, /, directory: str, target_url: str, **options: Any) -> None:
    """Load a VectorPack's records into TARGET (migrate from vectorpack://DIR)."""
    _run(ctx, api.migrate, StoreSpec("vectorpack", directory), target_url, **options)


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

    _emit(reindex(directory, ann=ann, threads=threads), as_json)


@pack.command(name="verify")
@click.argument("directory")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pack_verify(ctx: click.Context, directory: str, as_json: bool) -> None:
    """Check every file's hash, the layout, and the cartridge; exit 3 on any problem."""
    from ..pack.vectorpack import verify_pack

    report = verify_pack(directory)
    _emit_report(ctx, report, as_json)


def _cartridge_path(location: str, *, pack: bool = False) -> str:
    spec = StoreSpec.parse(location)
    if spec.path and (spec.scheme == "cartridge" or (pack and spec.scheme == "vectorpack")):
        return spec.path
    raise UsageError(f"{location!r} is not a cartridge; give cartridge:///path/memory.db"
                     + (" or vectorpack:///path/memory.vpack" if pack else ""))


def _vector_file(path: str | None) -> list[float] | None:
    if path is None:
        return None
    try:
        values = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as err:
        raise UsageError(f"--vector-file {path}: {err}") from None
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        raise UsageError(f"--vector-file {path} must hold a JSON list of numbers")
    return [float(v) for v in values]


@cli.command()
@click.argument("cartridge")
@click.option("--query", help="Text to search for (embedded with --embed-model).")
@click.option("--keyword", help="Keyword search over the text (FTS5) instead.")
@click.option("--vector-file", type=click.Path(dir_okay=False), help="A JSON list of numbers as the query.")
@click.option("--embed-model", metavar="MODEL", help="Embedder for --query (the cartridge's model).")
@click.option("--vector", "vector_name", default="", help="Which named vector to search [default: the default].")
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
                      vector_name=vector_name, weights=Weights(w_similarity, w_elo, w_recency, half_life_days),
                      exact=exact)
    if as_json:
        click.echo(orjson.dumps(hits, option=orjson.OPT_INDENT_2).decode())
        return
    for hit in hits:
        text = (hit["text"] or "").replace("\n", " ")
        click.echo(f"{hit['rank']:>3}  {hit['score']:.4f}  {hit['namespace'] or '-'}/{hit['id']}  {text[:80]}")


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

    _emit(run_feedback(_cartridge_path(cartridge), record_id, namespace=namespace, helpful=helpful,
                       note=note), as_json)


@cli.command()
@click.argument("source_url")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False))
@click.option("--query", help="Text to select for (embedded with --embed-model).")
@click.option("--vector-file", type=click.Path(dir_okay=False), help="A JSON list of numbers as the query.")
@click.option("--embed-model", metavar="MODEL")
@click.option("--vector", "vector_name", default="", help="Which named vector [default: the default].")
@click.option("--k", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--quantize", "quantization", type=click.Choice(["int8", "float16"]), default="int8",
              show_default=True)
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
    _emit(header, as_json)


@cli.group()
def adapter() -> None:
    """Adapters between embedding models: train, eval, apply, list (docs/embeddings.md)."""


@adapter.command(name="train")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--from-model", metavar="MODEL", help="The source space's embedder (e.g. static).")
@click.option("--to-model", metavar="MODEL", help="The target space's embedder (e.g. minilm).")
@click.option("--corpus", type=click.Path(dir_okay=False, exists=True),
              help="Texts to embed with both models, one per line [default: the generated corpus].")
@click.option("--pairs", type=click.Path(dir_okay=False, exists=True),
              help='JSONL of {"source": [...], "target": [...]} instead of a corpus.')
@click.option("--size", type=click.IntRange(min=100), default=3000, show_default=True,
              help="Sentences of the generated corpus.")
@click.option("--test-fraction", type=click.FloatRange(0.05, 0.5), default=0.25, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def adapter_train(output: str, from_model: str | None, to_model: str | None, corpus: str | None,
                  pairs: str | None, size: int, test_fraction: float, seed: int, as_json: bool) -> None:
    """Learn OUTPUT (.npz, with OUTPUT's .card.json) from model A's space to model B's."""
    from .. import adapters

    card = adapters.train_adapter(output, from_model=from_model, to_model=to_model, corpus=corpus,
                                  pairs=pairs, size=size, test_fraction=test_fraction, seed=seed)
    _emit(card if as_json else {"adapter": output, "method": card["method"],
                                "params": card["params"], "evaluation": card["evaluation"]}, as_json)


@adapter.command(name="eval")
@click.argument("adapter_file", type=click.Path(dir_okay=False))
@click.option("--corpus", type=click.Path(dir_okay=False, exists=True))
@click.option("--pairs", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True)
def adapter_eval(adapter_file: str, corpus: str | None, pairs: str | None, as_json: bool) -> None:
    """Recompute an adapter's held-out evaluation (it should match its card)."""
    from .. import adapters

    _emit(adapters.evaluate_adapter(adapter_file, corpus=corpus, pairs=pairs), as_json)


@adapter.command(name="apply")
@click.argument("adapter_file", type=click.Path(dir_okay=False))
@click.argument("source_url")
@click.argument("target_url")
@_run_options
@click.pass_context
def adapter_apply(ctx: click.Context, /, adapter_file: str, source_url: str, target_url: str,
                  **options: Any) -> None:
    """Migrate SOURCE to TARGET translating vectors with the adapter (migrate --adapter)."""
    options["adapter"] = adapter_file
    _run(ctx, api.migrate, source_url, target_url, **options)


@adapter.command(name="list")
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--json", "as_json", is_flag=True)
def adapter_list(directory: str, as_json: bool) -> None:
    """The adapters in DIRECTORY and their measured quality."""
    from .. import adapters

    found = {card["path"]: {"from": card["source"], "to": card["target"], "method": card["method"],
                            "evaluation": card["evaluation"]}
             for card in adapters.list_adapters(directory)}
    _emit(found, as_json)


def _emit_report(ctx: click.Context, report: dict[str, Any], as_json: bool) -> None:
    """A check's report; exit 3 (integrity failure) when it is not ok."""
    _emit(report, as_json)
    if not report["ok"]:
        ctx.exit(3)


def _emit(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print_mapping(report)


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
    except MigrationError as err:
        click.echo(f"vex: error: {err}", err=True)
        if err.receipt is not None and err.receipt.checkpoint_file:
            click.echo(f"  checkpoint: {err.receipt.checkpoint_file}", err=True)
        return exit_code_for(err)
    except VexError as err:
        click.echo(f"vex: error: {err}", err=True)
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
