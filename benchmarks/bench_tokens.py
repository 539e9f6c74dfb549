"""Benchmark of the tokens paradigm on MovieLens-100K (leave-one-out, full ranking).

Parts (each merges its figures into the JSON, so they can run separately and resume):

* ``ids``      — semantic-ID diagnostics (collision rate, codebook usage/entropy, dead codes,
  reconstruction) for MiniLM vectors (RQ-KMeans, balanced RQ-KMeans, RQ-VAE) and for SmolLM2
  mean-pooled hidden states (RQ-KMeans);
* ``models``   — SASRec vs SASRec over semantic-ID features vs generative retrieval (TIGER, on
  text-only semantic IDs and, ``tiger-cf``, on IDs of text + collaborative factors):
  NDCG@10 / Recall@10 overall and on the cold-item slice, invalid-ID rate (measured, with and
  without the trie constraint), fit time;
* ``latency``  — generative decoding per user (batch of one, beam 20, top-10): percentiles;
* ``tags``     — tag generation throughput (items/s) of each offline LM on a sample of items
  (``--tag-sample``; ``--tag-sample 0`` tags all 1,682 items).

Run (2-core machine; keep it polite to neighbours)::

    OMP_WAIT_POLICY=PASSIVE nice .venv/bin/python benchmarks/bench_tokens.py
    OMP_WAIT_POLICY=PASSIVE nice .venv/bin/python benchmarks/bench_tokens.py --parts tags \
        --tag-sample 0          # every item, both LMs (long)

Prints a table per part and writes ``benchmarks/results/bench_tokens.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmrec import paths
from llmrec.data.movielens import load_movielens_100k
from llmrec.data.splits import Split, leave_one_out
from llmrec.eval.protocols import evaluate
from llmrec.eval.slices import slice_report
from llmrec.lm.registry import load_lm

TEMPLATE = "{title} ({year}). Genres: {genres}"
OUT = Path(__file__).parent / "results" / "bench_tokens.json"
COLD_MAX = 10  # cold-item slice: held-out item with at most this many training interactions


def _merge(out: Path, key: str, value: Any) -> None:
    data = json.loads(out.read_text()) if out.is_file() else {}
    data[key] = value
    data["machine"] = "2-core shared CPU (other jobs running), torch CPU"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=float))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    fmt = [
        [f"{r.get(c):.4f}" if isinstance(r.get(c), float) else str(r.get(c)) for c in cols]
        for r in rows
    ]
    widths = [max(len(c), *(len(f[i]) for f in fmt)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(f, widths, strict=True)) for f in fmt]
    return "\n".join(lines)


def _vectors(spec: str, texts: list[str], cache: Path, **options: Any) -> np.ndarray:
    lm = load_lm(spec, lm_cache_dir=cache, **options)
    try:
        return lm.encode(texts)
    finally:
        lm.close()


# --- parts ------------------------------------------------------------------------------------
def part_ids(split: Split, cache: Path, out: Path, seeds: int) -> dict[str, Any]:
    from llmrec.paradigms.tokens.quantize import RQVAE, RQKMeans

    texts = split.train.item_texts(TEMPLATE)
    encoders = {
        "minilm-l6": _vectors("minilm-l6", texts, cache),
        "smollm2-135m (mean-pooled)": _vectors("smollm2-135m", texts, cache, n_threads=2),
    }
    runs = [
        ("minilm-l6", "rq-kmeans", lambda s: RQKMeans(levels=3, seed=s)),
        ("minilm-l6", "rq-kmeans balanced", lambda s: RQKMeans(levels=3, balanced=True, seed=s)),
        ("minilm-l6", "rq-kmeans K=64", lambda s: RQKMeans(levels=3, codebook_size=64, seed=s)),
        ("minilm-l6", "rq-vae", lambda s: RQVAE(levels=3, seed=s)),
        ("smollm2-135m (mean-pooled)", "rq-kmeans", lambda s: RQKMeans(levels=3, seed=s)),
        (
            "smollm2-135m (mean-pooled)",
            "rq-kmeans balanced",
            lambda s: RQKMeans(levels=3, balanced=True, seed=s),
        ),
    ]
    rows, full = [], {}
    for enc, method, make in runs:
        diags, secs = [], []
        for seed in range(seeds):
            start = time.perf_counter()
            ids = make(seed).fit(encoders[enc], split.train.item_ids)
            secs.append(time.perf_counter() - start)
            diags.append(ids.diagnostics)
            if seed == 0 and enc == "minilm-l6" and method == "rq-kmeans":
                ids.save(cache / "semantic_ids_minilm")
        med = {
            k: statistics.median(getattr(d, k) for d in diags)
            for k in ("collision_rate", "recon_rel", "max_collisions")
        }
        d0 = diags[0]
        rows.append(
            {
                "encoder": enc,
                "method": method,
                "K": d0.codebook_size,
                "collision": med["collision_rate"],
                "max_group": int(med["max_collisions"]),
                "usage": "/".join(f"{u:.2f}" for u in d0.usage),
                "entropy_bits": "/".join(f"{e:.2f}" for e in d0.entropy_bits),
                "dead": "/".join(str(x) for x in d0.dead_codes),
                "recon_rel": med["recon_rel"],
                "fit_s": statistics.median(secs),
            }
        )
        full[f"{enc} | {method}"] = {
            "median": med,
            "fit_s": statistics.median(secs),
            "seeds": [d.as_dict() for d in diags],
        }
    print(_table(rows))
    result = {"table": rows, "runs": full, "seeds": seeds, "levels": 3}
    _merge(out, "semantic_ids", result)
    return result


def _model_row(
    name: str, model: Any, split: Split, fit_s: float, fit_cpu_s: float
) -> dict[str, Any]:
    result = evaluate(model, split, ks=(10, 20))
    report = slice_report(result, split, max_item_count=COLD_MAX)
    log = getattr(model, "train_log", None)
    return {
        "model": name,
        "ndcg@10": report["overall"]["ndcg@10"],
        "recall@10": report["overall"]["recall@10"],
        "cold_ndcg@10": report["cold_items"]["ndcg@10"],
        "cold_recall@10": report["cold_items"]["recall@10"],
        "cold_users": int(report["cold_items"]["n_users"]),
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "cpu_to_best_s": getattr(log, "cpu_to_best_s", None),
        "best_epoch": getattr(log, "best_epoch", None),
        "eval_per_user_ms": result.timings["per_user_ms"],
        "violations": sum(result.violations.values()),
    }


def _minilm_ids(split: Split, cache: Path, collaborative: float = 0.0) -> Any:
    """MiniLM semantic IDs (RQ-KMeans 3 levels, seed 0), built once and kept in ``cache``;
    with ``collaborative`` > 0 the vectors carry the training interactions' SVD factors too."""
    from llmrec.paradigms.tokens._ids import SemanticIDConfig, with_collaborative
    from llmrec.paradigms.tokens.quantize import RQKMeans, SemanticIDs

    name = "semantic_ids_minilm" + (f"_cf{collaborative:g}" if collaborative else "")
    folder = cache / name
    if not folder.is_dir():
        vectors = _vectors("minilm-l6", split.train.item_texts(TEMPLATE), cache)
        if collaborative:
            dim = SemanticIDConfig().collaborative_dim
            vectors = with_collaborative(vectors, split.train, collaborative, dim, seed=0)
        RQKMeans(levels=3).fit(vectors, split.train.item_ids).save(folder)
    return SemanticIDs.load(folder)


def _model_dir(cache: Path, name: str) -> Path:
    """Where ``part_models`` keeps a fitted generative model for ``part_latency``."""
    return cache / f"{name.replace('-', '_')}_model"


def part_models(split: Split, cache: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from llmrec.models.sasrec import SASRec
    from llmrec.paradigms.tokens.generative import GenerativeRetrieval
    from llmrec.paradigms.tokens.token_sasrec import TokenSASRec

    ids = _minilm_ids(split, cache)
    tiger = {
        "epochs": args.tiger_epochs,
        "patience": args.tiger_patience,
        "dim": args.tiger_dim,
        "valid_users": args.tiger_valid_users,
        "stride": args.tiger_stride,
    }
    common = {"epochs": args.epochs, "eval_every": args.eval_every}
    makers = {
        "sasrec": lambda: SASRec(**common),
        "token-sasrec": lambda: TokenSASRec(**common, ids=ids),
        "token-sasrec-codes-only": lambda: TokenSASRec(**common, id_embedding=False, ids=ids),
        # TIGER keeps its own defaults (lr 3e-3, dim 128, 4 heads, eval every 3 epochs)
        "tiger": lambda: GenerativeRetrieval(**tiger, collaborative=0.0, ids=ids),
        "tiger-cf": lambda: GenerativeRetrieval(
            **tiger,
            collaborative=args.collaborative,
            ids=_minilm_ids(split, cache, args.collaborative),
        ),
    }
    rows: list[dict[str, Any]] = []
    invalid: dict[str, Any] = {}
    for name, make in makers.items():
        if args.models and name not in args.models:
            continue
        model = make()
        start, cpu_start = time.perf_counter(), time.process_time()
        model.fit(split.train, split.valid)
        fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        rows.append(_model_row(name, model, split, fit_s, fit_cpu_s))
        print(_table(rows[-1:]), flush=True)
        if isinstance(model, GenerativeRetrieval):
            invalid[name] = _invalid_rates(model, split)
            rows[-1]["invalid_constrained"] = invalid[name]["constrained"]["rate"]
            model.save(_model_dir(cache, name))
    result = {"table": rows, "invalid_ids": invalid, "cold_max_item_count": COLD_MAX}
    prev = json.loads(out.read_text()).get("models", {}) if out.is_file() else {}
    if args.models and prev:  # a partial rerun keeps the other models' rows
        keep = [r for r in prev.get("table", []) if r["model"] not in {x["model"] for x in rows}]
        result["table"] = keep + rows
        kept = prev.get("invalid_ids", {})
        if "constrained" in kept:  # written before rows were keyed by model
            kept = {"tiger": kept}
        result["invalid_ids"] = {**kept, **invalid}
    # ratio against the SASRec row of this run, or of the kept rows on a partial rerun
    base = next((r for r in result["table"] if r["model"] == "sasrec"), None)
    if base is not None:
        for row in result["table"]:
            row["ndcg_vs_sasrec"] = row["ndcg@10"] / max(base["ndcg@10"], 1e-12)
    print(_table(result["table"]))
    print(json.dumps(invalid, indent=2))
    _merge(out, "models", result)
    return result


def _invalid_rates(model: Any, split: Split) -> dict[str, Any]:
    """Invalid-ID rate over the test users' beams: constrained (as recommended) and not."""
    users = split.test.active_users()
    hist = split.known_at_test().history()
    out = {}
    for constrained in (True, False):
        model.config.constrained = constrained
        model.decode_stats = {"users": 0, "beams": 0, "invalid": 0}
        model.decode(users, hist, beam_size=20)
        stats = dict(model.decode_stats)
        stats["rate"] = stats["invalid"] / max(stats["beams"], 1)
        out["constrained" if constrained else "unconstrained"] = stats
    model.config.constrained = True
    return out


def part_latency(split: Split, cache: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from llmrec.models.base import Recommender

    model: Any = Recommender.load(_model_dir(cache, args.latency_model))
    users = split.test.active_users()[: args.latency_users]
    hist = split.known_at_test().history()
    model.decode(users[:5], hist, beam_size=20)  # warm-up
    repeats = []
    for _ in range(args.repeats):
        times = []
        for user in users:
            start = time.perf_counter()
            items, _ = model.decode(np.array([user]), hist, beam_size=20)
            _top10 = items[0, :10]
            times.append(1000 * (time.perf_counter() - start))
        repeats.append([*np.percentile(times, [50, 90, 95, 99]).tolist(), float(np.mean(times))])
    med = np.median(np.array(repeats), axis=0)
    start = time.perf_counter()
    model.decode(users, hist, beam_size=20)
    batched = 1000 * (time.perf_counter() - start) / len(users)
    result = {
        "beam": 20,
        "top_k": 10,
        "users": len(users),
        "repeats": args.repeats,
        "model": args.latency_model,
        "p50_ms": med[0],
        "p90_ms": med[1],
        "p95_ms": med[2],
        "p99_ms": med[3],
        "mean_ms": med[4],
        "batched_per_user_ms": batched,
    }
    print(_table([result]))
    _merge(out, "decode_latency", result)
    return result


def part_tags(split: Split, cache: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from llmrec.paradigms.tokens.tags import TagConfig, generate_item_tags

    texts = split.train.item_texts(TEMPLATE)
    n = len(texts) if args.tag_sample == 0 else min(args.tag_sample, len(texts))
    sample = np.random.default_rng(0).choice(len(texts), n, replace=False)
    rows, examples = [], {}
    for spec in args.lms:
        # no answer cache here: throughput is what generating costs
        lm = load_lm(spec, n_threads=2)
        cfg = TagConfig(batch_size=8, min_count=2)
        generate_item_tags(lm, [texts[i] for i in sample[:2]], cfg)  # warm-up
        result = generate_item_tags(lm, [texts[i] for i in sample], cfg)
        lm.close()
        rows.append({"lm": spec, **result.summary()})
        examples[spec] = [
            {"item": texts[i], "raw": result.raw[j], "tags": result.tags[j]}
            for j, i in enumerate(sample[:5])
        ]
        print(_table(rows[-1:]), flush=True)
    result_all = {"sample": n, "table": rows, "examples": examples}
    print(json.dumps(examples, indent=2))
    _merge(out, "tags", result_all)
    return result_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["ids", "models", "latency", "tags"])
    parser.add_argument(
        "--models",
        nargs="*",
        default=[],
        help="sasrec, token-sasrec, token-sasrec-codes-only, tiger, tiger-cf (default: all)",
    )
    parser.add_argument(
        "--collaborative",
        type=float,
        default=1.0,
        help="tiger-cf: weight of the collaborative factors beside the text vectors",
    )
    parser.add_argument("--latency-model", default="tiger-cf", choices=["tiger", "tiger-cf"])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--tiger-epochs", type=int, default=60)
    parser.add_argument("--tiger-dim", type=int, default=128)
    parser.add_argument(
        "--tiger-stride", type=int, default=None, help="TIGER's training-window stride (items)"
    )
    parser.add_argument("--tiger-patience", type=int, default=3)
    parser.add_argument(
        "--tiger-valid-users", type=int, default=0, help="users decoded per check (0: all)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="quantiser seeds (medians)")
    parser.add_argument("--repeats", type=int, default=3, help="latency repeats (medians)")
    parser.add_argument("--latency-users", type=int, default=200)
    parser.add_argument("--tag-sample", type=int, default=48, help="items tagged; 0 = all")
    parser.add_argument("--lms", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--cache", type=Path, default=paths.lm_cache_dir() / "bench_tokens")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    split = leave_one_out(load_movielens_100k())
    args.cache.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        print(f"\n== {part} ==", flush=True)
        if part == "ids":
            part_ids(split, args.cache, args.out, args.seeds)
        elif part == "models":
            part_models(split, args.cache, args.out, args)
        elif part == "latency":
            part_latency(split, args.cache, args.out, args)
        elif part == "tags":
            part_tags(split, args.cache, args.out, args)
        else:
            raise SystemExit(f"unknown part {part!r}")


if __name__ == "__main__":
    main()
