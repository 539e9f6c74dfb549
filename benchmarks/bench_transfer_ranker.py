"""Benchmark of the fine-tuned verbaliser ranker (issue 17) against its zero-shot self.

On MovieLens-100K (leave-one-out by time), the candidate protocol of ``bench_direct.py`` (the
held-out item among 19 uniform negatives, shuffled per user, the same seeded users):

* popularity, the zero-shot SmolLM2 verbaliser and (on the first ``--likelihood-users``) the
  zero-shot likelihood ranker;
* the same verbaliser after ``fit`` tuned it with LoRA (or in full) on the training split, under a
  wall-time budget;
* paired tests over users (sign-flip p-value, bootstrap interval) of tuned vs each of them;
* position spread (true item at slots 0 / 9 / 19) before and after tuning: after tuning both
  as shipped (a ranker tuned on shuffled lists shows candidates in its own seeded order, so the
  slot cannot reach the LM) and *raw* (the candidates shown in the given order, what the LM
  itself makes of the slot; the issue's bar);
* tuning cost: wall and CPU seconds, steps, examples and prompt tokens seen, trainable
  parameters, adapter bytes on disk, and the validation learning curve.

Run (about 30 minutes on a shared 2-core CPU with the defaults; hold the heavy-job lock)::

    flock /tmp/llmrec-heavy.lock .venv/bin/python benchmarks/bench_transfer_ranker.py

Writes ``benchmarks/results/bench_transfer_ranker.json`` and prints a table.
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
from llmrec.eval import evaluate_candidates, sample_candidates
from llmrec.eval.bias import position_bias, scorer_of
from llmrec.eval.protocols import truth_for
from llmrec.eval.stats import paired_test
from llmrec.lm.registry import load_lm
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import TwoStage, VerbaliserRanker, make_ranker

RESULTS = Path(__file__).parent / "results" / "bench_transfer_ranker.json"
#: the prompt of bench_direct.py, so the zero-shot figures compare with docs/benchmarks.md
PROMPT = {
    "item_template": "{title} ({year})",
    "profile_fields": ["gender", "age_group", "occupation"],
    "history_tokens": 150,
    "max_history": 10,
}
SPEC = "smollm2-135m"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200, help="users, candidate protocol")
    parser.add_argument("--likelihood-users", type=int, default=30)
    parser.add_argument("--probe-users", type=int, default=30, help="users, position spread")
    parser.add_argument("--slots", type=int, nargs="+", default=[0, 9, 19])
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--train-seconds", type=float, default=900.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--targets-per-user", type=int, default=2)
    parser.add_argument("--valid-users", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--order", choices=["shuffled", "retriever"], default="shuffled")
    parser.add_argument("--negatives", choices=["uniform", "popularity"], default="uniform")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history-tokens", type=int, default=PROMPT["history_tokens"])
    parser.add_argument("--max-history", type=int, default=PROMPT["max_history"])
    parser.add_argument("--save", type=Path, default=None, help="keep the tuned weights here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def tune_block(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "method": args.method,
        "rank": args.rank,
        "alpha": args.alpha,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "max_seconds": args.train_seconds,
        "max_steps": args.max_steps,
        "targets_per_user": args.targets_per_user,
        "valid_users": args.valid_users,
        "eval_every": args.eval_every,
        "patience": args.patience,
        "order": args.order,
        "negatives": args.negatives,
        "n_candidates": 20,
        "seed": args.seed,
    }


def candidates(split: Split, n_users: int, seed: int) -> tuple[np.ndarray, ...]:
    """bench_direct.py's users and candidates: ``(users, cands, positives)``."""
    hist = split.known_at_test().history()
    rng = np.random.default_rng(seed)
    active = split.test.active_users()
    users = np.sort(rng.choice(active, size=min(n_users, len(active)), replace=False))
    truth = truth_for(users, split.test)
    cands = sample_candidates(users, truth, hist, split.train.n_items, n_negatives=19, seed=seed)
    return users, cands, truth.items[truth.indptr[:-1]]


def run_candidates(model: Any, split: Split, users: np.ndarray, cands: np.ndarray) -> dict:
    res = evaluate_candidates(model, split, users=users, candidates=cands, ks=(1, 5, 10))
    return {
        "n_users": len(users),
        "ndcg@10": res.metrics["ndcg@10"],
        "hr@1": res.metrics["hr@1"],
        "hr@5": res.metrics["hr@5"],
        "per_user_ndcg@10": res.per_user["ndcg@10"].tolist(),
    }


def spread(ranker: VerbaliserRanker, split: Split, users, cands, positives, slots) -> dict:
    scorer = scorer_of(ranker, split.known_at_test().history())
    bias = position_bias(scorer, users, cands, positives, slots=slots, k=10)
    return {
        "n_users": len(users),
        "slots": slots,
        "ndcg": bias.ndcg.tolist(),
        "spread": bias.spread,
    }


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    test = paired_test(np.asarray(a), np.asarray(b))
    return {
        "mean_diff": test.mean_diff,
        "low": test.low,
        "high": test.high,
        "p_value": test.p_value,
        "n_users": test.n_users,
    }


def prompt_of(args: argparse.Namespace) -> dict[str, Any]:
    return PROMPT | {"history_tokens": args.history_tokens, "max_history": args.max_history}


def zero_shot(args, split, lm, users, cands, positives, report) -> None:
    """Popularity, the zero-shot verbaliser and likelihood rankers (before tuning changes lm)."""
    report["popularity"] = run_candidates(Popularity().fit(split.train), split, users, cands)
    config = {"kind": "verbaliser", "lm": SPEC, "prompt": prompt_of(args), "batch_size": 1}
    ranker = make_ranker(config, lm=lm)
    model = TwoStage(Popularity(), ranker).fit(split.train)
    print(f"zero-shot verbaliser ({len(users)} users)", flush=True)
    report["zero_shot"] = run_candidates(model, split, users, cands)
    n = args.probe_users
    assert isinstance(ranker, VerbaliserRanker)
    report["zero_shot"]["position"] = spread(
        ranker, split, users[:n], cands[:n], positives[:n], args.slots
    )
    n = args.likelihood_users
    if n:
        print(f"zero-shot likelihood ({n} users)", flush=True)
        config = {"kind": "likelihood", "lm": SPEC, "prompt": prompt_of(args), "batch_size": 1}
        model = TwoStage(Popularity(), make_ranker(config, lm=lm)).fit(split.train)
        report["zero_shot_likelihood"] = run_candidates(model, split, users[:n], cands[:n])


def tuned(args, split, lm, users, cands, positives, report) -> None:
    config = {"lm": SPEC, "prompt": prompt_of(args), "batch_size": 1, "tune": tune_block(args)}
    ranker = VerbaliserRanker(config, lm=lm)
    print(
        f"{time.strftime('%H:%M:%S')} tuning ({args.method}, {args.train_seconds:.0f} s)",
        flush=True,
    )
    tic, cpu = time.perf_counter(), time.process_time()
    model = TwoStage(Popularity(), ranker).fit(split.train)
    fit = {"fit_s": time.perf_counter() - tic, "fit_cpu_s": time.process_time() - cpu}
    assert ranker.tune_report is not None
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.save or Path(tmp)
        ranker.save_tuned(folder)
        sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    report["tuning"] = ranker.tune_report.as_dict() | fit | {"saved_bytes": sizes}
    _write(args.out, report)
    print(f"tuned verbaliser ({len(users)} users)", flush=True)
    report["tuned"] = run_candidates(model, split, users, cands)
    n = args.probe_users
    report["tuned"]["position"] = spread(
        ranker, split, users[:n], cands[:n], positives[:n], args.slots
    )
    print(f"raw position spread ({n} users)", flush=True)
    report["tuned"]["position_raw"] = spread(
        given_order(ranker), split, users[:n], cands[:n], positives[:n], args.slots
    )


def given_order(ranker: VerbaliserRanker) -> VerbaliserRanker:
    """The tuned ranker (same LM instance and texts) showing candidates in the given order."""
    data = ranker.config.model_dump()
    data["tune"]["order"] = "retriever"
    twin = VerbaliserRanker(data, lm=ranker.lm)
    builder = ranker.builder
    return twin.bind(ranker.item_texts, builder.profiles, builder.shot_history)


def compare(report: dict[str, Any]) -> dict[str, Any]:
    mine = report["tuned"]["per_user_ndcg@10"]
    out = {
        "tuned_vs_zero_shot": paired(mine, report["zero_shot"]["per_user_ndcg@10"]),
        "tuned_vs_popularity": paired(mine, report["popularity"]["per_user_ndcg@10"]),
    }
    if "zero_shot_likelihood" in report:
        other = report["zero_shot_likelihood"]["per_user_ndcg@10"]
        out["tuned_vs_zero_shot_likelihood"] = paired(mine[: len(other)], other)
    return out


def main() -> None:
    args = parse_args()
    split = leave_one_out(load_movielens_100k())
    users, cands, positives = candidates(split, args.users, args.seed)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU (shared), torch threads "
        f"{args.threads}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}",
        "dataset": "ml-100k, leave-one-out, test phase; 1 + 19 uniform candidates",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    tic = time.perf_counter()
    lm = load_lm(SPEC, n_threads=args.threads)
    report["load_s"] = time.perf_counter() - tic
    zero_shot(args, split, lm, users, cands, positives, report)
    _write(args.out, report)
    tuned(args, split, lm, users, cands, positives, report)
    report["paired"] = compare(report)
    _write(args.out, report)
    print_table(report)


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=float))


def print_table(report: dict[str, Any]) -> None:
    rows = [("popularity", "popularity"), ("zero-shot verbaliser", "zero_shot")]
    if "zero_shot_likelihood" in report:
        rows.append(("zero-shot likelihood", "zero_shot_likelihood"))
    rows.append(("tuned verbaliser", "tuned"))
    head = f"{'entry':<22} {'users':>5} {'NDCG@10':>8} {'HR@1':>6} {'HR@5':>6}"
    print(f"\n{head} {'spread':>7} {'raw':>6}")
    for name, key in rows:
        r = report[key]
        cells = [r.get(part, {}).get("spread") for part in ("position", "position_raw")]
        spreads = " ".join(f"{v:6.3f}" if v is not None else f"{'-':>6}" for v in cells)
        print(
            f"{name:<22} {r['n_users']:>5} {r['ndcg@10']:8.3f} {r['hr@1']:6.2f} {r['hr@5']:6.2f} "
            f" {spreads}"
        )
    for name, t in report["paired"].items():
        print(
            f"{name}: diff {t['mean_diff']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}] "
            f"p={t['p_value']:.4f} ({t['n_users']} users)"
        )
    tune = report["tuning"]
    print(
        f"tuning: {tune['steps']} steps, {tune['examples_seen']} examples, "
        f"{tune['tokens_seen']} tokens, {tune['seconds']:.0f} s wall, "
        f"{tune['cpu_seconds']:.0f} s CPU, {tune['trainable_parameters']} trainable, "
        f"saved {sum(tune['saved_bytes'].values())} bytes, stopped: {tune['stopped']}"
    )
    for row in tune["curve"]:
        print(
            f"  step {row['step']:>4} examples {row['examples_seen']:>5} "
            f"loss {row['train_loss']:.3f} valid NDCG@10 {row['valid_ndcg@10']:.3f}"
        )


if __name__ == "__main__":
    main()
