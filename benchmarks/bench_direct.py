"""Benchmark of the direct paradigm (the LM as the ranker) on MovieLens-100K.

For each LM and each ranker (verbaliser, likelihood, generation), on a seeded user sample:

* candidate protocol (LLMRank): the held-out item among 19 uniform negatives, shuffled per
  user -> NDCG@10, HR@1, HR@5, against random order (analytic) and popularity;
* two stages (LlamaRec): the retriever's top 20 re-ranked by the LM, full-ranking NDCG@10 /
  HR@10 beside the retriever alone, on the same users;
* per-user latency p50/p95 (one user per LM call, same prompts), LM calls and tokens per 1000
  ranked lists;
* position bias (positive at several slots; per-slot NDCG@10 spread) without and with
  bootstrapping (B shuffled orders, Borda), with its cost in LM calls; permutation agreement;
* popularity bias of the candidate-protocol rankings; FaiRLLM fairness (gender, age group)
  against a neutral profile.

Optionally (``--server``) the verbaliser runs once more against an OpenAI-compatible
llama.cpp server serving SmolLM2's GGUF.

Run (about 40 minutes on a shared 2-core CPU with the defaults)::

    .venv/bin/python benchmarks/bench_direct.py --users 30 --gen-users 8 --server

Writes ``benchmarks/results/bench_direct.json`` and prints a table.
"""

from __future__ import annotations

import os

# torch reads the OpenMP policy at import: spin-waiting collapses on 2 shared cores (MODELS.md)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.movielens import load_movielens_100k
from llmrec.data.splits import Split, leave_one_out
from llmrec.eval import evaluate, evaluate_candidates, sample_candidates
from llmrec.eval.bias import (
    bootstrap,
    fairness,
    permutation_agreement,
    popularity_bias,
    position_bias,
    ranked_under_profiles,
    scorer_of,
)
from llmrec.eval.protocols import truth_for
from llmrec.lm.base import LanguageModel
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import TwoStage, make_ranker

RESULTS = Path(__file__).parent / "results" / "bench_direct.json"
PROMPT = {
    "item_template": "{title} ({year})",
    "profile_fields": ["gender", "age_group", "occupation"],
    "history_tokens": 150,
    "max_history": 10,
}
FAIRNESS = {"gender": ["male", "female"], "age_group": ["under 18", "25-34", "56+"]}


def random_ndcg(n_candidates: int, k: int) -> float:
    """Expected NDCG@k of one relevant item at a uniformly random position."""
    ranks = np.arange(min(k, n_candidates))
    return float((1.0 / np.log2(ranks + 2)).sum() / n_candidates)


def load(spec: str, threads: int, dtype: str | None = None) -> LanguageModel:
    from llmrec.lm.registry import load_lm

    if spec.startswith("fake"):
        return load_lm(spec)
    return load_lm(spec, n_threads=threads, **({"dtype": dtype} if dtype else {}))


def ranker_config(kind: str, spec: str) -> dict[str, Any]:
    """``verbaliser-cal`` is the verbaliser with contextual calibration."""
    config = {"kind": kind.removesuffix("-cal"), "lm": spec, "prompt": PROMPT, "batch_size": 1}
    if kind.endswith("-cal"):
        config["calibrate"] = True
    return config


def candidate_run(
    split: Split, kind: str, spec: str, lm: LanguageModel, users: np.ndarray, cands: np.ndarray
) -> dict[str, Any]:
    """Candidate-protocol metrics, latency, cost and popularity bias of one ranker."""
    model = TwoStage(Popularity(), make_ranker(ranker_config(kind, spec), lm=lm))
    model.fit(split.train)
    res = evaluate_candidates(model, split, users=users, candidates=cands, ks=(1, 5, 10, 20))
    stats = model.ranker.stats.summary()
    per_1000 = 1000.0 / max(1, stats["users"])
    ranked = res.ranked  # (n, 20) full order of the candidates
    scores = -np.argsort(np.argsort(_positions(ranked, cands), axis=1), axis=1).astype(float)
    pop = popularity_bias(scores, cands, split.train.item_popularity(), k=5)
    return {
        "n_users": len(users),
        "ndcg@10": res.metrics["ndcg@10"],
        "hr@1": res.metrics["hr@1"],
        "hr@5": res.metrics["hr@5"],
        "latency_ms_p50": stats.get("call_ms_p50"),
        "latency_ms_p95": stats.get("call_ms_p95"),
        "lm_calls_per_1000": stats["lm_calls"] * per_1000,
        "prompt_tokens_per_1000": stats["prompt_tokens"] * per_1000,
        "generated_tokens_per_1000": stats["generated_tokens"] * per_1000,
        "parse": {
            k: stats[k]
            for k in ("unparseable", "hallucinations", "off_candidates", "duplicates", "partial")
        }
        | {"fallback_slots": stats["fallback_slots"]},
        "label_mass_mean": stats.get("label_mass_mean"),
        "popularity_bias": pop,
    }


def _positions(ranked: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """``(n, c)`` position of each candidate in its ranked row (a permutation of the row)."""
    pos = np.zeros(cands.shape, dtype=np.int64)
    for row in range(len(cands)):
        where = {int(item): j for j, item in enumerate(ranked[row])}
        pos[row] = [where[int(i)] for i in cands[row]]
    return pos


def two_stage_run(
    split: Split, kind: str, spec: str, lm: LanguageModel, users: np.ndarray
) -> dict[str, Any]:
    model = TwoStage(Popularity(), make_ranker(ranker_config(kind, spec), lm=lm), n_candidates=20)
    model.fit(split.train)
    res = evaluate(model, split, users=users, ks=(10, 20))
    return {"n_users": len(users), "ndcg@10": res.metrics["ndcg@10"], **_hits(res.metrics)}


def _hits(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k in ("hr@10", "recall@20")}


def probes(
    split: Split,
    kind: str,
    spec: str,
    lm: LanguageModel,
    users: np.ndarray,
    cands: np.ndarray,
    positives: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Position bias (raw and bootstrapped), permutation agreement, fairness; one LM cache so
    repeated prompts (e.g. the likelihood ranker's order-blind prompts) cost nothing twice."""
    from llmrec.lm.cache import CachedLM

    hist = split.known_at_test().history()
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedLM(lm, tmp)
        ranker = make_ranker(ranker_config(kind, spec), lm=cached).fit(split.train)
        scorer = scorer_of(ranker, hist)
        before = ranker.stats.users
        raw = position_bias(scorer, users, cands, positives, slots=args.slots, k=10)
        boot = position_bias(
            bootstrap(scorer, args.bootstrap, seed=1), users, cands, positives,
            slots=args.slots, k=10,
        )  # fmt: skip
        out: dict[str, Any] = {
            "n_users": len(users),
            "position": raw.as_dict(),
            "position_bootstrapped": boot.as_dict() | {"n_orders": args.bootstrap},
            "bootstrap_cost_x": args.bootstrap,
        }
        if kind != "generation":
            out["agreement"] = permutation_agreement(scorer, users, cands, n_permutations=3)
        fair = {}
        for attribute, values in FAIRNESS.items():
            if kind == "generation" and attribute != "gender":
                continue
            rank_under = ranked_under_profiles(ranker, users, cands, hist, k=5)
            fair[attribute] = fairness(rank_under, attribute, values, n_users=len(users)).as_dict()
        out["fairness"] = fair
        out["lm_prompts"] = ranker.stats.users - before
        out["lm_cache_hits"] = cached.stats.cache_hits
    return out


def server_run(
    split: Split, users: np.ndarray, cands: np.ndarray, threads: int, gen_users: int
) -> dict[str, Any]:
    """The verbaliser and generation rankers through a llama.cpp OpenAI-compatible server."""
    from llmrec.lm._server import LlamaServer
    from llmrec.lm.openai import OpenAILM
    from llmrec.lm.registry import model_path

    out: dict[str, Any] = {}
    with LlamaServer(model_path("smollm2-135m"), model="smollm2", n_threads=threads) as server:
        lm = OpenAILM(server.base_url, "smollm2", concurrency=1)
        spec = f"openai:{server.base_url}#smollm2"
        for kind, n in (("verbaliser", len(users)), ("generation", min(len(users), gen_users))):
            out[kind] = candidate_run(split, kind, spec, lm, users[:n], cands[:n])
        lm.close()
    return out


def latency_run(
    split: Split,
    spec: str,
    lm: LanguageModel,
    kinds: list[str],
    users: np.ndarray,
    cands: np.ndarray,
    positives: np.ndarray,
) -> dict[str, Any]:
    """Per-user latency with the rankers interleaved user by user (same prompts, same load),
    plus each ranker's NDCG@10 on these users."""
    hist = split.known_at_test().history()
    rankers = {k: make_ranker(ranker_config(k, spec), lm=lm).fit(split.train) for k in kinds}
    ms: dict[str, list[float]] = {k: [] for k in kinds}
    ndcg: dict[str, list[float]] = {k: [] for k in kinds}
    for row in range(len(users)):
        for kind, ranker in rankers.items():
            tic = time.perf_counter()
            scores = ranker.rank(users[row : row + 1], hist, cands[row : row + 1])[0]
            ms[kind].append(1000.0 * (time.perf_counter() - tic))
            rank = int(
                np.flatnonzero(cands[row][np.argsort(-scores, kind="stable")] == positives[row])[0]
            )
            ndcg[kind].append(1.0 / np.log2(rank + 2) if rank < 10 else 0.0)
    out: dict[str, Any] = {"n_users": len(users)}
    for kind in kinds:
        out[kind] = {
            "latency_ms_p50": float(np.percentile(ms[kind], 50)),
            "latency_ms_p95": float(np.percentile(ms[kind], 95)),
            "ndcg@10": float(np.mean(ndcg[kind])),
            "stats": rankers[kind].stats.summary(),
        }
    if "verbaliser" in kinds and "generation" in kinds:
        out["generation_over_verbaliser_p50"] = (
            out["generation"]["latency_ms_p50"] / out["verbaliser"]["latency_ms_p50"]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=30, help="users, candidate protocol")
    parser.add_argument("--gen-users", type=int, default=8, help="users for generation")
    parser.add_argument("--two-stage-users", type=int, default=20)
    parser.add_argument("--probe-users", type=int, default=8)
    parser.add_argument("--gen-probe-users", type=int, default=3)
    parser.add_argument("--slots", type=int, nargs="+", default=[0, 9, 19])
    parser.add_argument("--bootstrap", type=int, default=3, help="orders B")
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument(
        "--rankers",
        nargs="+",
        default=["verbaliser", "verbaliser-cal", "likelihood", "generation"],
        help="verbaliser, verbaliser-cal (calibrated), likelihood, generation",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="compute dtype of the local models (default: the backend's, float32)",
    )
    parser.add_argument("--server", action="store_true", help="also run via llama.cpp server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--latency-only",
        type=int,
        default=0,
        help="only the interleaved per-user latency run, on this many users",
    )
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="merge earlier JSON outputs into --out, no run"
    )
    args = parser.parse_args()
    if args.merge:
        merged = merge([json.loads(p.read_text()) for p in args.merge])
        _write(args.out, merged)
        print_table(merged)
        return

    data = load_movielens_100k()
    split = leave_one_out(data)
    hist = split.known_at_test().history()
    rng = np.random.default_rng(args.seed)
    active = split.test.active_users()
    users = np.sort(rng.choice(active, size=min(args.users, len(active)), replace=False))
    truth = truth_for(users, split.test)
    cands = sample_candidates(users, truth, hist, data.n_items, n_negatives=19, seed=args.seed)
    positives = truth.items[truth.indptr[:-1]]

    if args.latency_only:
        n = args.latency_only
        lat: dict[str, Any] = {"args": vars(args) | {"out": str(args.out), "merge": None}}
        for spec in args.models:
            lm = load(spec, args.threads, args.dtype)
            make_ranker(ranker_config("verbaliser", spec), lm=lm).fit(split.train).rank(
                users[:1], hist, cands[:1]
            )  # warm-up, not timed
            print(f"[{spec}] interleaved latency ({n} users)", flush=True)
            lat[spec] = latency_run(
                split, spec, lm, args.rankers, users[:n], cands[:n], positives[:n]
            )
            _write(args.out, {"latency": lat})
            lm.close()
        print(json.dumps(lat, indent=1, default=float))
        return
    pop = Popularity().fit(split.train)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU (shared), torch threads "
        f"{args.threads}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}",
        "dataset": "ml-100k, leave-one-out, test phase",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "baselines": {
            "random_ndcg@10": random_ndcg(20, 10),
            "random_hr@1": 1 / 20,
            "random_hr@5": 5 / 20,
            "popularity_candidates": _metrics(
                evaluate_candidates(pop, split, users=users, candidates=cands, ks=(1, 5, 10))
            ),
            "popularity_full": {
                "n_users": args.two_stage_users,
                **_metrics(evaluate(pop, split, users=users[: args.two_stage_users], ks=(10, 20))),
            },
        },
        "models": {},
    }
    for spec in args.models:
        tic = time.perf_counter()
        lm = load(spec, args.threads, args.dtype)
        entry: dict[str, Any] = {"load_s": time.perf_counter() - tic, "rankers": {}}
        make_ranker(ranker_config("verbaliser", spec), lm=lm).fit(split.train).rank(
            users[:1], hist, cands[:1]
        )  # warm-up, not timed
        for kind in args.rankers:
            n = args.gen_users if kind == "generation" else args.users
            n2 = min(n, args.two_stage_users)
            n3 = args.gen_probe_users if kind == "generation" else args.probe_users
            print(f"[{spec}] {kind}: candidates ({n} users)", flush=True)
            row = {"candidates": candidate_run(split, kind, spec, lm, users[:n], cands[:n])}
            print(f"[{spec}] {kind}: two stages ({n2} users)", flush=True)
            row["two_stage"] = two_stage_run(split, kind, spec, lm, users[:n2])
            print(f"[{spec}] {kind}: probes ({n3} users)", flush=True)
            row["probes"] = probes(
                split, kind, spec, lm, users[:n3], cands[:n3], positives[:n3], args
            )
            entry["rankers"][kind] = row
            _write(args.out, report | {"models": {**report["models"], spec: entry}})
        report["models"][spec] = entry
        lm.close()
    if args.server:
        print("[server] llama.cpp OpenAI-compatible server", flush=True)
        report["server"] = server_run(split, users, cands, args.threads, args.gen_users)
    _write(args.out, report)
    print_table(report)


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs (e.g. one per model, or extra rankers): each model entry
    keeps the baselines and arguments of the run that produced it (samples differ by size)."""
    first = next((r for r in reports if "models" in r), reports[0])
    out = {k: v for k, v in first.items() if k not in ("models", "server", "latency")}
    out["models"] = {}
    for report in reports:
        for name, entry in report.get("models", {}).items():
            run = {"baselines": report["baselines"], "args": report["args"]}
            for row in entry["rankers"].values():
                row["run"] = run
            if name in out["models"]:
                out["models"][name]["rankers"].update(entry["rankers"])
            else:
                out["models"][name] = entry
        if "server" in report:
            out["server"] = report["server"]
        if "latency" in report:
            out.setdefault("latency", {}).update(report["latency"])
    return out


def _metrics(res: Any) -> dict[str, float]:
    return {k: float(v) for k, v in res.metrics.items() if "@" in k and "pop" not in k}


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float))


def print_table(report: dict[str, Any]) -> None:
    base = report["baselines"]
    print(
        f"\nrandom NDCG@10 {base['random_ndcg@10']:.3f}; popularity (candidates) "
        f"NDCG@10 {base['popularity_candidates'].get('ndcg@10', 0):.3f}; popularity (full) "
        f"NDCG@10 {base['popularity_full'].get('ndcg@10', 0):.3f}"
    )
    head = (
        f"{'model':14} {'ranker':14} {'n':>3} {'NDCG@10':>7} {'HR@1':>5} {'HR@5':>5} "
        f"{'2st NDCG':>8} {'p50 ms':>8} {'p95 ms':>8} {'calls/1k':>8} {'tok/1k':>9} "
        f"{'spread':>6} {'boot':>6} {'pop lift':>8}"
    )
    print(head)
    rows = [(m, k, r) for m, e in report["models"].items() for k, r in e["rankers"].items()]
    rows += [(f"server:{k}", k, {"candidates": r}) for k, r in report.get("server", {}).items()]
    for model, kind, r in rows:
        c = r["candidates"]
        two = r.get("two_stage", {}).get("ndcg@10", float("nan"))
        pr = r.get("probes", {})
        spread = pr.get("position", {}).get("spread", float("nan"))
        boot = pr.get("position_bootstrapped", {}).get("spread", float("nan"))
        tokens = c["prompt_tokens_per_1000"] + c["generated_tokens_per_1000"]
        print(
            f"{model:14} {kind:14} {c['n_users']:>3} {c['ndcg@10']:>7.3f} {c['hr@1'] or 0:>5.2f} "
            f"{c['hr@5'] or 0:>5.2f} {two:>8.3f} {c['latency_ms_p50'] or 0:>8.0f} "
            f"{c['latency_ms_p95'] or 0:>8.0f} {c['lm_calls_per_1000']:>8.0f} {tokens:>9.0f} "
            f"{spread:>6.3f} {boot:>6.3f} {c['popularity_bias']['lift']:>8.2f}"
        )


if __name__ == "__main__":
    main()
