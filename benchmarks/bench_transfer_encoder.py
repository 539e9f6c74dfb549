"""Tuned encoders on MovieLens-100K: what contrastive tuning of MiniLM on behaviour buys, and
what it costs.

Protocol (as ``benchmarks/bench_embeddings.py``): every rating an interaction, leave-one-out by
time, full ranking over the items each user does not know, all 943 test users; the cold-item
slice is the users whose test item had at most ``--max-item-count`` (default 5) training
interactions. Tuning reads the training split only.

Parts:

* ``knn`` — item-kNN, text-kNN on zero-shot MiniLM, and text-kNN on MiniLM tuned with each
  ``--pairs`` kind (``tune:`` as given by ``--max-pairs``, ``--epochs``, ``--lr``,
  ``--batch-size``, ``--loss``, ``--window``);
* ``sasrec`` — SASRec and LM-SASRec on the vectors of the first tuned encoder (read back from
  the cache the ``knn`` part filled, when run together).

``--parts report`` runs nothing and rewrites the table and tests from the rows ``--out`` holds.

Paired tests over users (sign-flip randomisation, :func:`llmrec.eval.stats.paired_test`) on
NDCG@10: each tuned text-kNN against zero-shot text-kNN (all users) and against item-kNN (all
users, the cold-item users and the wider slice), each tuned text-kNN against the others (one
setting against another), LM-SASRec on tuned vectors against SASRec (all users).

    OMP_WAIT_POLICY=PASSIVE flock /tmp/llmrec-heavy.lock .venv/bin/python \\
        benchmarks/bench_transfer_encoder.py --parts knn sasrec

Writes ``benchmarks/results/bench_transfer_encoder.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "bench_transfer_encoder.json"
TEMPLATE = "{title} ({year}). Genres: {genres}"


def evaluate_model(name: str, model: Any, split: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Fit, evaluate on the test items, and keep per-user NDCG@10 for the paired tests."""
    from llmrec.eval import evaluate
    from llmrec.eval.slices import cold_item_mask

    tic, cpu = time.perf_counter(), time.process_time()
    model.fit(split.train, split.valid)
    fit_s, fit_cpu_s = time.perf_counter() - tic, time.process_time() - cpu
    result = evaluate(model, split, phase="test", ks=(10, 20))
    cold = cold_item_mask(result, split, max_item_count=args.max_item_count)
    wide = cold_item_mask(result, split, max_item_count=args.wide_item_count)
    row: dict[str, Any] = {
        "model": name,
        "params": model.config.model_dump(mode="json"),
        "ndcg@10": result.metrics["ndcg@10"],
        "recall@10": result.metrics["recall@10"],
        "cold_ndcg@10": result.slice(cold)["ndcg@10"],
        "cold_recall@10": result.slice(cold)["recall@10"],
        "cold_users": int(cold.sum()),
        "wide_ndcg@10": result.slice(wide)["ndcg@10"],
        "wide_users": int(wide.sum()),
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "_users": result.users,
        "_ndcg": result.per_user["ndcg@10"],
        "_cold": cold,
        "_wide": wide,
    }
    tuning = model.diagnostics().get("tuning")
    if tuning:
        row["tuning"] = tuning
    print(
        f"[{name}] ndcg@10 {row['ndcg@10']:.4f}, cold {row['cold_ndcg@10']:.4f} "
        f"(n={row['cold_users']}), fit {fit_s:.0f} s",
        flush=True,
    )
    return row


def tune_params(args: argparse.Namespace, pairs: str) -> dict[str, Any]:
    return {
        "pairs": pairs,
        "max_pairs": args.max_pairs,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "loss": args.loss,
        "window": args.window,
    }


def label(args: argparse.Namespace, pairs: str) -> str:
    """A tuned row's name: the pair kind and what sets the cost (rows of runs with other
    settings then sit side by side in one results file)."""
    name = f"{pairs}, {args.max_pairs} pairs, {args.loss}, lr {args.lr:g}, batch {args.batch_size}"
    return name + text_label(args, ", ")


def text_label(args: argparse.Namespace, sep: str) -> str:
    """Nothing for the benchmark's item template; the text named otherwise."""
    if args.item_template == TEMPLATE:
        return ""
    return f"{sep}text {args.item_template!r}" if args.item_template else f"{sep}fields text"


def zero_shot_name(args: argparse.Namespace) -> str:
    named = text_label(args, "")
    return f"textknn[{named}]" if named else "textknn"


def template(args: argparse.Namespace) -> str | None:
    """``--item-template`` as a config value ('' is the library default: the fields joined)."""
    return args.item_template or None


def knn_rows(split: Any, args: argparse.Namespace, runtime: Any) -> list[dict[str, Any]]:
    from llmrec.models import create_model

    text = {"encoder": "minilm-l6", "item_template": template(args), "seed": args.seed}
    zero_shot = create_model("textknn", text, runtime)
    rows = [
        evaluate_model("itemknn", create_model("itemknn"), split, args),
        evaluate_model(zero_shot_name(args), zero_shot, split, args),
    ]
    for pairs in args.pairs:
        params = {**text, "tune": tune_params(args, pairs)}
        model = create_model("textknn", params, runtime)
        row = evaluate_model(f"textknn-tuned[{label(args, pairs)}]", model, split, args)
        rows.append({**row, "zero_shot": zero_shot_name(args)})
    return rows


def sasrec_rows(split: Any, args: argparse.Namespace, runtime: Any) -> list[dict[str, Any]]:
    from llmrec.models import create_model

    train = {"seed": args.seed, **({"epochs": args.sasrec_epochs} if args.sasrec_epochs else {})}
    text = {"encoder": "minilm-l6", "item_template": template(args)}
    tuned = {**text, **train, "tune": tune_params(args, args.pairs[0])}
    lm_sasrec = create_model("lm-sasrec", tuned, runtime)
    return [
        evaluate_model("sasrec", create_model("sasrec", train), split, args),
        evaluate_model(f"lm-sasrec-tuned[{label(args, args.pairs[0])}]", lm_sasrec, split, args),
    ]


def paired(a: dict[str, Any], b: dict[str, Any], mask: str | None = None) -> dict[str, Any]:
    """A minus B on NDCG@10 over the same users (``mask``: only A's ``_cold`` or ``_wide``
    users)."""
    from llmrec.eval.stats import paired_test

    assert np.array_equal(a["_users"], b["_users"])
    keep = a[f"_{mask}"] if mask else np.ones(len(a["_users"]), dtype=bool)
    test = paired_test(a["_ndcg"][keep], b["_ndcg"][keep], seed=0)
    out = {
        "a": a["model"],
        "b": b["model"],
        "users": {"cold": "cold items", "wide": "items <= 20"}.get(mask or "", "all"),
        "mean_a": float(a["_ndcg"][keep].mean()),
        "mean_b": float(b["_ndcg"][keep].mean()),
        "diff": test.mean_diff,
        "low": test.low,
        "high": test.high,
        "p_value": test.p_value,
        "n_users": test.n_users,
    }
    print(f"[paired] {out}", flush=True)
    return out


def tests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {r["model"]: r for r in rows}
    out = []
    for r in rows:
        if r["model"].startswith("textknn-tuned"):
            zero_shot = by.get(r.get("zero_shot", "textknn"))
            if zero_shot is not None:
                out.append(paired(r, zero_shot))
            if "itemknn" in by:
                out.append(paired(r, by["itemknn"]))
                out.append(paired(r, by["itemknn"], "cold"))
                out.append(paired(r, by["itemknn"], "wide"))
        if r["model"].startswith("lm-sasrec-tuned") and "sasrec" in by:
            out.append(paired(r, by["sasrec"]))
    tuned = [r for r in rows if r["model"].startswith("textknn-tuned")]
    zero = [r for r in rows if r["model"].startswith("textknn") and r not in tuned]
    for group in (zero, tuned):  # one text, or one tuning setting, against another
        for i, a in enumerate(group):
            out += [paired(a, b) for b in group[i + 1 :]]
    return out


def table(record: dict[str, Any]) -> str:
    lines = [
        "| model | NDCG@10 | Recall@10 | cold NDCG@10 | cold users | NDCG@10 items ≤ 20 | fit s | "
        "tuning CPU s | pairs | tokens seen | weights MB |",
        "|---" * 11 + "|",
    ]
    for r in record["models"]:
        t = r.get("tuning") or {}
        cost = (
            f"{t['cpu_seconds']:.0f} | {t['pairs']} | {t['tokens_seen']:,} | "
            f"{t['weights_bytes'] / 1e6:.0f}"
            if t
            else "– | – | – | –"
        )
        lines.append(
            f"| {r['model']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | "
            f"{r['cold_ndcg@10']:.4f} | {r['cold_users']} | {r['wide_ndcg@10']:.4f} | "
            f"{r['fit_s']:.0f} | {cost} |"
        )
    head = "| A | B | users | A NDCG@10 | B NDCG@10 | A − B [95% CI] | p |"
    lines += ["", head, "|---" * 7 + "|"]
    for t in record["paired"]:
        lines.append(
            f"| {t['a']} | {t['b']} | {t['users']} ({t['n_users']}) | {t['mean_a']:.4f} | "
            f"{t['mean_b']:.4f} | {t['diff']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}] | "
            f"{t['p_value']:.3g} |"
        )
    return "\n".join(lines)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row for the JSON file: per-user arrays as lists."""
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    out["per_user"] = {
        "users": row["_users"].tolist(),
        "ndcg@10": row["_ndcg"].tolist(),
        "cold": row["_cold"].tolist(),
        "wide": row["_wide"].tolist(),
    }
    return out


def _merge(path: Path, fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not path.is_file():
        return fresh
    done = {r["model"] for r in fresh}
    kept = []
    for old in json.loads(path.read_text()).get("models", []):
        if old["model"] in done or "per_user" not in old:
            continue
        per = old.pop("per_user")
        old["_users"] = np.asarray(per["users"], dtype=np.int64)
        old["_ndcg"] = np.asarray(per["ndcg@10"], dtype=np.float64)
        old["_cold"] = np.asarray(per["cold"], dtype=bool)
        old["_wide"] = np.asarray(per["wide"], dtype=bool)
        kept.append(old)
    return kept + fresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", nargs="+", default=["knn", "sasrec"], help="knn, sasrec; 'report' runs none"
    )
    parser.add_argument("--pairs", nargs="+", default=["co-interaction"])
    parser.add_argument("--max-pairs", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--loss", choices=["symmetric", "mnrl"], default="symmetric")
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--item-template", default=TEMPLATE, help="'' is the library's default text (fields joined)"
    )
    parser.add_argument("--sasrec-epochs", type=int, default=None, help="cap (smoke tests)")
    parser.add_argument("--max-item-count", type=int, default=5)
    parser.add_argument("--wide-item-count", type=int, default=20, help="a wider cold slice")
    parser.add_argument("--cache-dir", default=None, help="LM cache (default: a fresh temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from llmrec.data.movielens import load_movielens_100k
    from llmrec.data.splits import leave_one_out
    from llmrec.runtime import RuntimeOptions

    split = leave_one_out(load_movielens_100k())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        runtime = RuntimeOptions(cache_dir=args.cache_dir or tmp)
        if "knn" in args.parts:
            rows += knn_rows(split, args, runtime)
        if "sasrec" in args.parts:
            rows += sasrec_rows(split, args, runtime)
    rows = _merge(args.out, rows)  # rows an earlier run measured stay, unless measured again
    record = {
        "benchmark": "bench_transfer_encoder",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), no GPU",
        "dataset": "ml-100k, leave-one-out by time, full ranking",
        "item_template": template(args),
        "cold_items_definition": f"test item with <= {args.max_item_count} training interactions",
        "wide_definition": f"test item with <= {args.wide_item_count} training interactions",
        "args": {k: v for k, v in vars(args).items() if k != "out"},  # each row: its params
        "models": [_public(r) for r in rows],
        "paired": tests(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(table(record))


if __name__ == "__main__":
    main()
