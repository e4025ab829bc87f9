"""``vex adapter``: adapters between embedding models (docs/embeddings.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._app import cli, emit, lazy_module
from ._options import run_options
from ._running import run_command

if TYPE_CHECKING:
    from .. import api
else:  # imported when a command first uses it (_app.lazy_module)
    api = lazy_module("api")

METHODS = ("procrustes", "procrustes-centred", "ridge", "lowrank", "mlp")
"""vexchange.adapters.METHODS, spelt out so that ``vex --help`` imports no numpy (a test
checks the two agree)."""


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
@click.option("--method", "methods", multiple=True, default=("auto",), show_default=True,
              type=click.Choice(["auto", *METHODS]),
              help="The methods to try (repeat the option for several); auto tries them all and"
                   " the validation split picks one (docs/embeddings.md).")
@click.option("--json", "as_json", is_flag=True)
def adapter_train(output: str, from_model: str | None, to_model: str | None, corpus: str | None,
                  pairs: str | None, size: int, test_fraction: float, seed: int,
                  methods: tuple[str, ...], as_json: bool) -> None:
    """Learn OUTPUT (.npz, with OUTPUT's .card.json) from model A's space to model B's."""
    from .. import adapters

    chosen = METHODS if "auto" in methods else tuple(dict.fromkeys(methods))
    card = adapters.train_adapter(output, from_model=from_model, to_model=to_model, corpus=corpus,
                                  pairs=pairs, size=size, test_fraction=test_fraction, seed=seed,
                                  methods=chosen)
    emit(card if as_json else {"adapter": output, "method": card["method"],
                               "params": card["params"], "evaluation": card["evaluation"]}, as_json)


@adapter.command(name="eval")
@click.argument("adapter_file", type=click.Path(dir_okay=False))
@click.option("--corpus", type=click.Path(dir_okay=False, exists=True))
@click.option("--pairs", type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True)
def adapter_eval(adapter_file: str, corpus: str | None, pairs: str | None, as_json: bool) -> None:
    """Recompute an adapter's held-out evaluation (it should match its card)."""
    from .. import adapters

    emit(adapters.evaluate_adapter(adapter_file, corpus=corpus, pairs=pairs), as_json)


@adapter.command(name="apply")
@click.argument("adapter_file", type=click.Path(dir_okay=False))
@click.argument("source_url")
@click.argument("target_url")
@run_options(lazy=True)
@click.pass_context
def adapter_apply(ctx: click.Context, /, adapter_file: str, source_url: str, target_url: str,
                  **options: Any) -> None:
    """Migrate SOURCE to TARGET translating vectors with the adapter (migrate --adapter)."""
    options["adapter"] = adapter_file
    run_command(ctx, api.migrate, source_url, target_url, **options)


@adapter.command(name="list")
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--json", "as_json", is_flag=True)
def adapter_list(directory: str, as_json: bool) -> None:
    """The adapters in DIRECTORY and their measured quality."""
    from .. import adapters

    found = {card["path"]: {"from": card["source"], "to": card["target"], "method": card["method"],
                            "evaluation": card["evaluation"]}
             for card in adapters.list_adapters(directory)}
    emit(found, as_json)
