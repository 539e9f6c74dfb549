"""Does Wikidata enrichment help text-kNN on ML-1M's cold items? Plain vs enriched item text.

One LM paradigm (embeddings: text-kNN over all-MiniLM-L6-v2 vectors), one dataset
(``ml-1m+wikidata``), one split, the same users; only ``item_template`` changes:

* ``plain`` — what MovieLens alone knows: title, year, genres;
* ``enriched`` — the ML-1M preset's template: plain plus Wikidata's genres and director;
* ``enriched+cast`` — plus writer, cast and country (longer text: the cast is often 20+ names).

Protocol: llmrec's strict one (every rating an interaction, leave-one-out by time, full
ranking over the 3,706 items with every known item masked, all 6,040 users). The **cold-item
slice** is the report's (:func:`llmrec.eval.slices.cold_item_mask`): users whose test item had
at most ``--max-item-count`` (default 5, the ML-1M preset's) training interactions; further
thresholds (``--wider 20 50``) add wider slices, reported as exploratory, since the slice at 5
holds few users on ML-1M (its rarest films are rarely anyone's last rating). Each
enriched template is compared with ``plain`` by a paired test over the users of the slice
(:func:`llmrec.eval.stats.paired_test`: sign-flip p-value, BCa interval of the NDCG@10
difference), Holm-adjusted over the enriched templates within each slice. Text-kNN has no
training randomness: the seed only drives the bootstrap and the sign flips.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_enrich.py

Writes ``benchmarks/results/bench_enrich.json``. Needs the ML-1M and film caches
(``llmrec data fetch ml-1m --enrich wikidata``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "bench_enrich.json"
TEMPLATES = {
    "plain": "{title} ({year}). {genres}",
    "enriched": "{title} ({year}). {genres} {film_genres}. {director}",
    "enriched+cast": "{title} ({year}). {genres} {film_genres}. Directed by {director}. "
    "Written by {writer}. Starring {cast}. {country}",
}
BASELINE = "plain"


def run_template(name: str, template: str, split: Any, threads: int) -> dict[str, Any]:
    """Fit text-kNN with ``template`` and score every test user; per-user NDCG@10 kept."""
    from llmrec.eval import evaluate
    from llmrec.models import create_model
    from llmrec.runtime import RuntimeOptions

    config = {"encoder": "minilm-l6", "item_template": template}
    model = create_model("textknn", config, RuntimeOptions(threads=threads))
    start, cpu0 = time.perf_counter(), time.process_time()
    model.fit(split.train)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    result = evaluate(model, split, phase="test", ks=(10,))
    print(f"[{name}] fit {fit_s:.0f} s, NDCG@10 {result.metrics['ndcg@10']:.4f}", flush=True)
    return {
        "template": template,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "violations": result.violations,
        "users": result.users,
        "ndcg@10": result.per_user["ndcg@10"],
        "recall@10": result.per_user["recall@10"],
        "result": result,
    }


def compare(runs: dict[str, dict[str, Any]], mask: Any, seed: int) -> dict[str, Any]:
    """Mean metrics of each template over the users in ``mask``; each enriched template
    against ``plain`` by a paired test, Holm-adjusted across the enriched templates."""
    from llmrec.eval.stats import holm, paired_test

    base = runs[BASELINE]
    means = {
        name: {
            "ndcg@10": float(r["ndcg@10"][mask].mean()),
            "recall@10": float(r["recall@10"][mask].mean()),
        }
        for name, r in runs.items()
    }
    tests = {
        name: vars(paired_test(r["ndcg@10"][mask], base["ndcg@10"][mask], seed=seed))
        for name, r in runs.items()
        if name != BASELINE
    }
    adjusted = holm([t["p_value"] for t in tests.values()])
    for test, p in zip(tests.values(), adjusted, strict=True):
        test["p_holm"] = float(p)
    return {"n_users": int(mask.sum()), "means": means, "vs_plain": tests}


def table(slices: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'slice':<12}{'n':>6}{'template':>15}{'NDCG@10':>9}{'HR@10':>8}"
        f"{'diff vs plain':>15}{'95% CI':>20}{'p':>8}{'p (Holm)':>10}"
    )
    lines = [head, "-" * len(head)]
    for slice_name, s in slices.items():
        for name, m in s["means"].items():
            t = s["vs_plain"].get(name)
            tail = ""
            if t:
                ci = f"[{t['low']:+.4f}, {t['high']:+.4f}]"
                tail = f"{t['mean_diff']:>+15.4f}{ci:>20}{t['p_value']:>8.3f}{t['p_holm']:>10.3f}"
            lines.append(
                f"{slice_name:<12}{s['n_users']:>6}{name:>15}{m['ndcg@10']:>9.4f}"
                f"{m['recall@10']:>8.4f}{tail}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import numpy as np

    from llmrec.data import load_dataset
    from llmrec.data.films import film_coverage
    from llmrec.data.splits import leave_one_out
    from llmrec.eval.slices import cold_item_mask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and sign-flip seed")
    parser.add_argument("--max-item-count", type=int, default=5)
    parser.add_argument("--wider", type=int, nargs="*", default=[20, 50], help="exploratory")
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES), choices=TEMPLATES)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = [BASELINE] + [n for n in args.templates if n != BASELINE]
    data = load_dataset("ml-1m+wikidata")
    split = leave_one_out(data)
    runs = {name: run_template(name, TEMPLATES[name], split, args.threads) for name in names}
    users = runs[BASELINE]["users"]
    for r in runs.values():  # every template scored the same users in the same order
        np.testing.assert_array_equal(r["users"], users)
    slices = {}
    for count in [args.max_item_count, *args.wider]:
        cold = cold_item_mask(runs[BASELINE]["result"], split, max_item_count=count)
        name = "cold_items" if count == args.max_item_count else f"cold<={count}"
        slices[name] = compare(runs, cold, args.seed)
    slices["all"] = compare(runs, np.ones(len(users), dtype=bool), args.seed)
    print(table(slices))
    report = {
        "protocol": "ml-1m+wikidata, every rating, leave-one-out by time, full ranking, known "
        f"items excluded, {len(users)} users; text-kNN over minilm-l6; cold items: test item "
        f"with <= {args.max_item_count} training interactions (wider, exploratory slices: "
        f"{args.wider}); paired sign-flip test and BCa "
        f"interval of NDCG@10 differences, seed {args.seed}, Holm across templates per slice",
        "film_coverage": film_coverage(data),
        "environment": {
            "python": platform.python_version(),
            "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
            "threads": args.threads,
            "load_avg_at_end": os.getloadavg(),
        },
        "templates": {n: r["template"] for n, r in runs.items()},
        "fit_s": {n: r["fit_s"] for n, r in runs.items()},
        "fit_cpu_s": {n: r["fit_cpu_s"] for n, r in runs.items()},
        "violations": {n: r["violations"] for n, r in runs.items()},
        "slices": slices,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
