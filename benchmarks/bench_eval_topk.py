"""Full-ranking evaluation of saved torch models on ML-100K: every metric to all its digits, a
digest of the ranked lists, and the seconds of the 943-user evaluation (median of repeats).

It checks the device top-K path (``Recommender.recommend`` ranks on the model's device and
moves only the top K back): run it once with the code before the change and once after, on
the same saved models, and compare. The models are saved folders (``llmrec compare --quick``'s
``stages/<name>/model``); ``--fit-bpr`` fits and saves a BPR-MF there first when it is absent.

    PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_eval_topk.py \\
        --models /tmp/topk-models --out benchmarks/results/bench_eval_topk.json

Writes the JSON given by ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_eval_topk.json"
METRICS = ("ndcg@10", "ndcg@20", "recall@10", "mrr@10", "mrr@20", "coverage", "gini")
#: the models whose evaluation is timed ``--repeats`` times (the others once)
TIMED = ("sasrec", "bpr")


def fit_bpr(folder: Path, split: Any) -> None:
    """BPR-MF (the bench_baselines defaults, 30 epochs at most) saved in ``folder``."""
    from llmrec.models.bpr import BPR

    BPR(epochs=30).fit(split.train, split.valid).save(folder)


def evaluate_one(folder: Path, split: Any, repeats: int, device: str) -> dict[str, Any]:
    """Metrics, a SHA-256 of the ranked lists and evaluation seconds of one saved model."""
    from llmrec.eval import evaluate
    from llmrec.models.base import Recommender

    model = Recommender.load(folder, runtime={"device": device})
    seconds = []
    for _ in range(repeats if folder.name in TIMED else 1):
        tic = time.perf_counter()
        result = evaluate(model, split, ks=(10, 20))
        seconds.append(time.perf_counter() - tic)
    return {
        "metrics": {k: result.metrics[k] for k in METRICS},
        "ranked_sha256": hashlib.sha256(result.ranked.tobytes()).hexdigest(),
        "n_users": len(result.users),
        "seconds": seconds,
        "median_s": statistics.median(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="folder of saved models")
    parser.add_argument("--only", nargs="*", help="these model folders only")
    parser.add_argument("--fit-bpr", action="store_true", help="fit and save bpr/ if absent")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from llmrec.data import load_dataset
    from llmrec.data.splits import leave_one_out

    split = leave_one_out(load_dataset("ml-100k"))
    if args.fit_bpr and not (args.models / "bpr").is_dir():
        fit_bpr(args.models / "bpr", split)
    names = args.only or sorted(p.name for p in args.models.iterdir() if p.is_dir())
    rows = {name: evaluate_one(args.models / name, split, args.repeats, args.device)
            for name in names}  # fmt: skip
    record = {"device": args.device, "dataset": "ml-100k", "models": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{'model':14} {'ndcg@10':>20} {'ndcg@20':>20} {'mrr@10':>20} {'ranked':>10} seconds")
    for name, row in rows.items():
        m = row["metrics"]
        times = " ".join(f"{s:.3f}" for s in row["seconds"])
        print(
            f"{name:14} {m['ndcg@10']!r:>20} {m['ndcg@20']!r:>20} {m['mrr@10']!r:>20} "
            f"{row['ranked_sha256'][:10]:>10} {times} (median {row['median_s']:.3f})"
        )


if __name__ == "__main__":
    main()
