"""The embeddings paradigm on MovieLens-100K: accuracy overall and on cold items, per encoder.

Protocol (as ``benchmarks/bench_baselines.py``): every rating an interaction, leave-one-out by
time, full ranking over all items the user is not known to have, all 943 users; torch models
early-stop on validation NDCG@10 and read the test set once. The **cold-item slice** is the
users whose test item had at most ``--max-item-count`` (default 5) training interactions.

Parts:

* ``throughput`` — all-MiniLM-L6-v2 encoding the 1,682 item texts through llmrec
  (:class:`~llmrec.paradigms.embeddings.encoder.TextEncoder`, no cache) and through
  sentence-transformers' own ``encode``, interleaved, median of ``--repeats``;
* ``models`` — popularity and SASRec, then for each encoder text-kNN and LM-SASRec
  (``item_repr`` text+id and text), the encoder being one config value;
* ``users`` — a cold-user split (10% of users lose their whole history) where the user-text
  tower ranks from the profile alone, against popularity.

    OMP_WAIT_POLICY=PASSIVE nice -n 10 .venv/bin/python benchmarks/bench_embeddings.py \
        --encoders minilm-l6 smollm2-135m gemma3-270m --seeds 0 1

Writes ``benchmarks/results/bench_embeddings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "bench_embeddings.json"
TEMPLATE = "{title} ({year}). Genres: {genres}"
METRICS = ("ndcg@10", "recall@10", "mrr@10")


def throughput(split: Any, repeats: int) -> dict[str, Any]:
    """Texts per second: llmrec's encoder vs sentence-transformers' encode, same texts."""
    import torch
    from sentence_transformers import SentenceTransformer

    from llmrec.lm.registry import model_path
    from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder

    torch.set_num_threads(2)
    texts = split.train.item_texts(TEMPLATE)
    ours = TextEncoder(EncoderConfig(encoder="minilm-l6", cache=False, batch_size=64))
    ours.encode(texts[:64])  # load and warm up
    st = SentenceTransformer(str(model_path("minilm-l6")), device="cpu")
    st.encode(texts[:64], batch_size=64)
    times: dict[str, list[float]] = {"llmrec": [], "sentence_transformers": []}
    for _ in range(repeats):
        start = time.perf_counter()
        mine, _ = ours.encode(texts)
        times["llmrec"].append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = st.encode(texts, batch_size=64, normalize_embeddings=True)
        times["sentence_transformers"].append(time.perf_counter() - start)
    cos = float((mine * theirs).sum(axis=1).min())
    rate = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    out = {
        "n_texts": len(texts),
        "texts_per_s": rate,
        "seconds_each_repeat": times,
        "ratio_llmrec_over_st": rate["llmrec"] / rate["sentence_transformers"],
        "min_cosine_between_outputs": cos,
    }
    print(f"[throughput] {out}", flush=True)
    return out


def evaluate_model(name: str, model: Any, split: Any, args: argparse.Namespace) -> dict[str, Any]:
    from llmrec.eval import evaluate
    from llmrec.eval.slices import slice_report

    start = time.perf_counter()
    model.fit(split.train, split.valid)
    fit_s = time.perf_counter() - start
    result = evaluate(model, split, phase="test", ks=(10, 20))
    report = slice_report(result, split, max_item_count=args.max_item_count)
    wide = slice_report(result, split, max_item_count=args.wide_item_count)["cold_items"]
    row: dict[str, Any] = {
        "model": name,
        "fit_s": fit_s,
        "overall": {m: report["overall"][m] for m in METRICS},
        "cold_items": {m: report["cold_items"][m] for m in METRICS},
        "cold_items_n_users": int(report["cold_items"]["n_users"]),
        f"items_le_{args.wide_item_count}": {m: wide[m] for m in (*METRICS, "n_users")},
        "coverage": result.metrics["coverage"],
    }
    info = getattr(model, "fit_info", None)
    if info:
        row["encoding"] = info
    log = getattr(model, "train_log", None)
    if log is not None:
        row["best_epoch"] = log.best_epoch
        row["time_to_best_s"] = log.time_to_best_s
    print(
        f"[models] {name}: ndcg@10 {row['overall']['ndcg@10']:.4f}, cold "
        f"{row['cold_items']['ndcg@10']:.4f} (n={row['cold_items_n_users']}), fit {fit_s:.0f} s",
        flush=True,
    )
    return row


def models(split: Any, args: argparse.Namespace, cache_dir: str) -> list[dict[str, Any]]:
    from llmrec.models import create_model
    from llmrec.runtime import RuntimeOptions

    rows = []
    if not args.skip_baselines:
        rows.append(evaluate_model("popularity", create_model("popularity"), split, args))
    train = {"epochs": args.epochs} if args.epochs else {}
    for seed in [] if args.skip_baselines else args.seeds:
        sasrec = create_model("sasrec", {"seed": seed, **train})
        rows.append(evaluate_model("sasrec", sasrec, split, args) | {"seed": seed})
    for encoder in args.encoders:
        text = {"encoder": encoder, "item_template": TEMPLATE}
        runtime = RuntimeOptions(cache_dir=cache_dir)
        # the first fit with an encoder pays for encoding (cold cache): its time is the encode time
        if not args.skip_textknn:
            knn = evaluate_model("textknn", create_model("textknn", text, runtime), split, args)
            rows.append(knn | {"encoder": encoder})
        for seed in args.seeds:
            for repr_ in args.item_reprs:
                params = {**text, **train, "seed": seed, "item_repr": repr_}
                model = create_model("lm-sasrec", params, runtime)
                row = evaluate_model(f"lm-sasrec[{repr_}]", model, split, args)
                rows.append(row | {"encoder": encoder, "seed": seed})
    return rows


def cold_users(split: Any, args: argparse.Namespace, cache_dir: str) -> list[dict[str, Any]]:
    from llmrec.eval import evaluate
    from llmrec.eval.slices import cold_user_split
    from llmrec.models import create_model
    from llmrec.runtime import RuntimeOptions

    cold_split, users = cold_user_split(split, fraction=0.1, seed=0)
    rows = []
    candidates = [("popularity", {})] + [
        (
            "user-tower",
            {
                "encoder": encoder,
                "item_template": TEMPLATE,
                "profile_template": "A {age}-year-old {gender} {occupation}.",
                "popularity_weight": weight,
            },
        )
        for encoder in args.encoders[:1]
        for weight in (0.0, 0.5)
    ]
    for name, params in candidates:
        runtime = RuntimeOptions(cache_dir=cache_dir)
        model = create_model(name, params, runtime).fit(cold_split.train, cold_split.valid)
        result = evaluate(model, cold_split, phase="test", ks=(10, 20), users=users)
        row = {
            "model": name,
            "params": params,
            "n_users": len(users),
            **{m: result.metrics[m] for m in METRICS},
        }
        print(f"[users] {row}", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["minilm-l6"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--item-reprs", nargs="*", default=["text+id", "text"])
    parser.add_argument("--skip-textknn", action="store_true", help="only LM-SASRec rows")
    parser.add_argument("--max-item-count", type=int, default=5)
    parser.add_argument("--wide-item-count", type=int, default=20, help="a wider cold slice")
    parser.add_argument("--epochs", type=int, default=None, help="cap epochs (smoke tests)")
    parser.add_argument("--skip-baselines", action="store_true", help="no popularity / SASRec")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=["throughput", "models", "users"])
    parser.add_argument("--cache-dir", default=None, help="LM cache (default: a fresh temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from llmrec.data.movielens import load_movielens_100k
    from llmrec.data.splits import leave_one_out

    split = leave_one_out(load_movielens_100k())
    record: dict[str, Any] = {
        "benchmark": "bench_embeddings",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), no GPU",
        "dataset": "ml-100k, leave-one-out by time, full ranking",
        "item_template": TEMPLATE,
        "cold_items_definition": f"test item with <= {args.max_item_count} training interactions",
        "seeds": args.seeds,
    }
    if args.out.is_file():  # keep parts measured by an earlier run
        record = {**json.loads(args.out.read_text()), **record}
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or tmp
        if "throughput" in args.parts:
            record["throughput"] = throughput(split, args.repeats)
        if "models" in args.parts:
            fresh = models(split, args, cache_dir)
            done = {_key(r) for r in fresh}
            kept = [r for r in record.get("models", []) if _key(r) not in done]
            record["models"] = kept + fresh
        if "users" in args.parts:
            record["cold_users"] = cold_users(split, args, cache_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(table(record))


def _key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (row["model"], row.get("encoder", "-"), row.get("seed", -1))


def table(record: dict[str, Any]) -> str:
    lines = [
        "| model | encoder | seed | NDCG@10 | Recall@10 | cold NDCG@10 | cold Recall@10 | "
        "cold users | encode s | fit s |",
        "|---" * 10 + "|",
    ]
    for r in record.get("models", []):
        enc = r.get("encoding", {})
        lines.append(
            f"| {r['model']} | {r.get('encoder', '-')} | {r.get('seed', '-')} | "
            f"{r['overall']['ndcg@10']:.4f} | {r['overall']['recall@10']:.4f} | "
            f"{r['cold_items']['ndcg@10']:.4f} | {r['cold_items']['recall@10']:.4f} | "
            f"{r['cold_items_n_users']} | {enc.get('encode_s', float('nan')):.1f} | "
            f"{r['fit_s']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
