"""Per-user spread of NDCG@10 differences on MovieLens-100K, and what it means for power.

Fits popularity, item-kNN and the transition floor (window 1 and 3) on the leave-one-out split,
optionally loads a saved SASRec folder (``--sasrec runs/.../model``; nothing is trained here),
evaluates all of them on the 943 test users (full ranking) and prints, for each pair against
item-kNN, the paired test, Cohen's d_z and the SD of the per-user differences; then the
minimal detectable effect (alpha 0.05, power 0.8) for n = 30, 100, 300, 943 users at those SDs.

    .venv/bin/python benchmarks/bench_stats.py --sasrec runs/compare-quick/stages/sasrec/model

Writes ``benchmarks/results/bench_stats.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmrec.data import leave_one_out, load_dataset
from llmrec.eval import evaluate
from llmrec.eval.stats import bootstrap_ci, minimal_detectable_effect, paired_test
from llmrec.models import create_model
from llmrec.models.base import Recommender

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_stats.json"
METRIC = "ndcg@10"
SIZES = (30, 100, 300, 943)
FITTED = {
    "popularity": ("popularity", {}),
    "itemknn": ("itemknn", {}),
    "transition": ("transition", {}),
    "transition-w3": ("transition", {"window": 3}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sasrec", type=Path, help="a saved SASRec model folder (not trained)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    split = leave_one_out(load_dataset("ml-100k"))
    models: dict[str, Recommender] = {
        name: create_model(kind, params).fit(split.train, split.valid)
        for name, (kind, params) in FITTED.items()
    }
    if args.sasrec:
        models["sasrec"] = Recommender.load(args.sasrec)
    per_user = {}
    for name, model in models.items():
        result = evaluate(model, split, phase="test", ks=(10,))
        per_user[name] = (result.users, result.per_user[METRIC])
    users, reference = per_user["itemknn"]
    rows = []
    print(
        f"{'entry':<14} {METRIC:>8} {'95% CI':>17} {'vs itemknn':>11} {'p':>7} {'d_z':>6} {'SD':>6}"
    )
    for name, (u, values) in per_user.items():
        ci = bootstrap_ci(values)
        row = {"entry": name, "mean": ci.mean, "low": ci.low, "high": ci.high}
        if name != "itemknn":
            t = paired_test(values, reference, users_a=u, users_b=users)
            row |= {
                "diff": t.mean_diff,
                "diff_low": t.low,
                "diff_high": t.high,
                "p": t.p_value,
                "d_z": t.effect_size,
                "sd_diff": t.sd_diff,
            }
        rows.append(row)
        print(
            f"{name:<14} {ci.mean:8.4f} [{ci.low:.4f}, {ci.high:.4f}] "
            + (
                f"{row['diff']:+11.4f} {row['p']:7.4f} {row['d_z']:6.3f} {row['sd_diff']:6.3f}"
                if "diff" in row
                else ""
            )
        )
    sds = {r["entry"]: r["sd_diff"] for r in rows if "sd_diff" in r}
    mde = {name: {n: minimal_detectable_effect(n, sd) for n in SIZES} for name, sd in sds.items()}
    print("\nminimal detectable effect on NDCG@10 (alpha 0.05, power 0.8), n users:")
    print(f"{'SD from':<34}" + "".join(f"{n:>9}" for n in SIZES))
    for name, by_n in mde.items():
        label = f"{name} vs itemknn ({sds[name]:.3f})"
        print(f"{label:<34}" + "".join(f"{by_n[n]:9.4f}" for n in SIZES))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"metric": METRIC, "rows": rows, "mde": mde}, indent=2))


if __name__ == "__main__":
    main()
