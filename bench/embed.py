"""Embeddings: local re-embedding throughput, and adapters between the 64-dim static model and
MiniLM (384) measured on held-out text, every method against a random projection.

    python bench/embed.py                  # 3,000 generated sentences, 25% held out
    python bench/embed.py --size 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vexchange import migrate
from vexchange.adapters.corpus import sentences
from vexchange.adapters.fit import candidates, fit, mean_cosine, random_projection, recall_at_k
from vexchange.embed import get_embedder
from vexchange.record import MemoryRecord
from vexchange.testing.conformance import write_vmig


def throughput(texts: list[str]) -> None:
    print("| embedder | dims | texts | texts/s |")
    print("|---|---|---|---|")
    for name in ("static", "minilm"):
        embedder = get_embedder(name)
        embedder.embed(texts[:64])  # load
        t = time.perf_counter()
        embedder.embed(texts)
        rate = len(texts) / (time.perf_counter() - t)
        print(f"| {name} | {embedder.dims} | {len(texts):,} | {rate:,.0f} |")
    with tempfile.TemporaryDirectory() as work:
        records = [MemoryRecord(id=f"m{i}", text=t) for i, t in enumerate(texts[:2000])]
        source = write_vmig(Path(work) / "in.vmig.jsonl", records)
        t = time.perf_counter()
        receipt = migrate(source, Path(work) / "out.vmig.jsonl", reembed="all", embed_model="minilm",
                          receipt=Path(work) / "r.json", rejects=Path(work) / "r.rej")
        rate = receipt.counts.reembedded / (time.perf_counter() - t)
        print("\nmigrate --reembed all --embed-model minilm, 2,000 records vmig -> vmig:"
              f" {rate:,.0f} records/s")


def adapters(texts: list[str], test_fraction: float) -> None:
    x_static = get_embedder("static").embed(texts)
    x_minilm = get_embedder("minilm").embed(texts)
    order = np.random.default_rng(0).permutation(len(texts))
    cut = int(len(texts) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    fit_idx, val_idx = train[: int(cut * 0.8)], train[int(cut * 0.8):]
    for label, x, y in (("static (64) -> MiniLM (384)", x_static, x_minilm),
                        ("MiniLM (384) -> static (64)", x_minilm, x_static)):
        print(f"\n{label}: trained on {cut:,} sentences, measured on {len(test):,} held out\n")
        print("| method | chosen parameters | mean cosine | recall@10 |")
        print("|---|---|---|---|")
        best: dict[str, tuple[float, dict[str, object]]] = {}
        for method, params in candidates(x.shape[1], y.shape[1]):
            model = fit(method, x[fit_idx], y[fit_idx], params)
            score = recall_at_k(model.apply(x[val_idx]), y[val_idx])
            if method not in best or score > best[method][0]:
                best[method] = (score, params)
        for method, (_, params) in best.items():
            model = fit(method, x[train], y[train], params)
            p = model.apply(x[test])
            print(f"| {method} | {params or '-'} | {mean_cosine(p, y[test]):.3f} |"
                  f" {recall_at_k(p, y[test]):.3f} |")
        p = random_projection(x.shape[1], y.shape[1]).apply(x[test])
        print(f"| random projection | - | {mean_cosine(p, y[test]):.3f} | {recall_at_k(p, y[test]):.3f} |")
        print("| re-embedding (the target model itself) | - | 1.000 | 1.000 |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    args = parser.parse_args()
    texts = sentences(args.size)
    throughput(sentences(5000, seed=1))
    adapters(texts, args.test_fraction)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
