"""SASRec on MovieLens-1M to its best epoch, on llmrec's strict protocol.

Protocol: every rating an interaction, leave-one-out by time (last = test, second last =
valid), full ranking over all 3,706 items except the user's known ones (train + valid at test
time), all 6,040 users. Training early-stops on validation NDCG@10; the test set is read once,
after fitting. CPU seconds (all threads of this process) are reported beside wall seconds: on a
shared machine they are the steadier measure.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_ml1m.py --save runs/sasrec-ml1m
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_ml1m.py --loss sampled \
        --epochs 16 --out benchmarks/results/bench_ml1m_sampled.json

The JSON keeps each test user's NDCG@10 (``per_user_ndcg@10``, aligned with ``users``), so two
runs can be compared with a paired test over the same users (``--paired-with OTHER.json``).

Writes ``benchmarks/results/bench_ml1m.json``; ``--save`` keeps the fitted model, which
``llmrec reproduce hstu-ml1m --model DIR`` scores under HSTU's protocol without retraining.
Needs the ML-1M cache (``llmrec data fetch ml-1m``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

from llmrec.reproduce import SASREC_ML1M

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_ml1m.json"
METRICS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20")
#: SASRec's ML-1M settings, the same the ML-1M preset and `llmrec reproduce` train with
#: (llmrec.reproduce.SASREC_ML1M: whole-sequence windows, 200 items of context and dropout 0.2
#: as HSTU's SASRec), with full-softmax cross-entropy unless --loss says otherwise
DEFAULTS: dict[str, Any] = {**SASREC_ML1M, "loss": "ce"}


def run(config: dict[str, Any], threads: int, save: Path | None) -> dict[str, Any]:
    """Fit SASRec on ML-1M's strict split and score the test users; the figures as a dict."""
    from llmrec.data import load_dataset
    from llmrec.data.splits import leave_one_out
    from llmrec.eval import evaluate
    from llmrec.models import create_model
    from llmrec.runtime import RuntimeOptions

    start = time.perf_counter()
    split = leave_one_out(load_dataset("ml-1m"))
    load_s = time.perf_counter() - start
    model = create_model("sasrec", config, RuntimeOptions(threads=threads))
    cpu0 = time.process_time()
    start = time.perf_counter()
    model.fit(split.train, split.valid)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    log = model.training_log()
    result = evaluate(model, split, phase="test", ks=(10, 20))
    if save is not None:
        model.save(save)
    return {
        "config": model.config.model_dump(mode="json"),
        "threads": threads,
        "metrics": {k: result.metrics[k] for k in METRICS},
        "hr@10": result.metrics["recall@10"],
        "violations": result.violations,
        "n_users": len(result.users),
        "load_split_s": load_s,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "time_to_best_s": log.time_to_best_s if log else fit_s,
        "cpu_to_best_s": log.cpu_to_best_s if log else fit_cpu_s,
        "best_epoch": log.best_epoch if log else None,
        "epochs_run": len(log.losses) if log else None,
        "valid_curve": log.scores if log else [],
        "seconds_curve": log.seconds if log else [],
        "eval_s": result.timings["total_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "users": result.users.tolist(),
        "per_user_ndcg@10": [round(float(v), 6) for v in result.per_user["ndcg@10"]],
    }


def paired(fig: dict[str, Any], other: dict[str, Any], name: str, seed: int) -> dict[str, Any]:
    """This run's per-user NDCG@10 against another run's (``other``: its JSON's ``sasrec``
    figures, from the file ``name``; A = this run), over the same users."""
    from llmrec.eval.stats import paired_test

    test = paired_test(
        fig["per_user_ndcg@10"],
        other["per_user_ndcg@10"],
        users_a=fig["users"],
        users_b=other["users"],
        seed=seed,
    )
    return {"against": name, "other_loss": other["config"]["loss"], **vars(test)}


def table(fig: dict[str, Any]) -> str:
    m = fig["metrics"]
    head = (
        f"{'model':<16}{'NDCG@10':>9}{'HR@10':>8}{'MRR@10':>8}{'best ep':>9}{'of':>4}"
        f"{'CPU s to best':>15}{'wall s to best':>16}{'eval s':>8}"
    )
    name = f"sasrec-{fig['config']['loss']}"
    row = (
        f"{name:<16}{m['ndcg@10']:>9.4f}{m['recall@10']:>8.4f}{m['mrr@10']:>8.4f}"
        f"{fig['best_epoch']:>9}{fig['epochs_run']:>4}{fig['cpu_to_best_s']:>15.0f}"
        f"{fig['time_to_best_s']:>16.0f}{fig['eval_s']:>8.2f}"
    )
    return "\n".join([head, "-" * len(head), row])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--max-len", type=int, default=DEFAULTS["max_len"])
    parser.add_argument("--loss", choices=["ce", "bce", "sampled"], default=DEFAULTS["loss"])
    parser.add_argument("--n-negatives", type=int, default=128, help="for --loss sampled")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--patience", type=int, default=DEFAULTS["patience"])
    parser.add_argument("--eval-every", type=int, default=1, help="epochs between validations")
    parser.add_argument("--attn-dropout", type=float, default=DEFAULTS["attn_dropout"])
    parser.add_argument(
        "--batching",
        choices=["shuffled", "by_length"],
        default=DEFAULTS["batching"],
    )
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=DEFAULTS["precision"])
    parser.add_argument("--save", type=Path, help="keep the fitted model in this folder")
    parser.add_argument("--paired-with", type=Path, help="another run's JSON: paired test")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    other: dict[str, Any] = {}
    if args.paired_with is not None:  # read and checked before the long fit, not after it
        other = json.loads(args.paired_with.read_text()).get("sasrec", {})
        if "per_user_ndcg@10" not in other:
            parser.error(f"{args.paired_with} keeps no per-user NDCG@10 to pair with")
    config = {
        **DEFAULTS,
        "epochs": args.epochs,
        "max_len": args.max_len,
        "seed": args.seed,
        "loss": args.loss,
        "batch_size": args.batch_size,
        "patience": args.patience,
        "eval_every": args.eval_every,
        "attn_dropout": args.attn_dropout,
        "batching": args.batching,
        "precision": args.precision,
    }
    if args.loss == "sampled":
        config["n_negatives"] = args.n_negatives
    from llmrec import progress

    with progress.reporting():  # one line per epoch on stderr: a cut-short run still tells
        fig = run(config, args.threads, args.save)
    print(table(fig))
    if args.paired_with is not None:
        fig["paired"] = paired(fig, other, args.paired_with.name, args.seed)
        p = fig["paired"]
        print(
            f"paired vs {p['against']}: NDCG@10 diff {p['mean_diff']:+.4f} "
            f"[{p['low']:+.4f}, {p['high']:+.4f}], p = {p['p_value']:.3g}, n = {p['n_users']}"
        )
    cpu_bar = 15 * 60
    print(
        f"{'MET ' if fig['cpu_to_best_s'] <= cpu_bar else 'MISS'} best epoch within "
        f"{cpu_bar} CPU s: {fig['cpu_to_best_s']:.0f} CPU s"
        + ("" if fig["best_epoch"] < fig["epochs_run"] else " (best = last epoch: still rising)")
    )
    report = {
        "protocol": "ml-1m, every rating, leave-one-out by time, full ranking, known items "
        "excluded, 6,040 users; one seed",
        "environment": {
            "python": platform.python_version(),
            "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "load_avg_at_end": os.getloadavg(),
        },
        "sasrec": fig,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
