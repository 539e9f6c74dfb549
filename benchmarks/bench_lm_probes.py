"""Seconds the prompt and candidate-count validity probes add to the quick preset's LM entries.

Builds the quick preset's two LM entries (``llm-rerank``: item-kNN's top 20 re-ranked by the
SmolLM2 verbaliser; ``llm-candidates``: the same ranker under the candidate protocol) on
ML-100K, evaluates each on the validity probe users only (the probes need the evaluation's
lists of those users, not the whole sample), then runs the two probes as a compare stage does
and times each. The quick preset's other settings are used unchanged.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_lm_probes.py

Writes ``benchmarks/results/bench_lm_probes.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from llmrec.compare import quick_config
from llmrec.compare.context import StageContext, load_data
from llmrec.compare.stage import build_model
from llmrec.compare.validity import run_validity
from llmrec.experiment import evaluate_protocol, split_data

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_lm_probes.json"
ENTRIES = ("llm-rerank", "llm-candidates")


def main() -> None:
    config = quick_config()
    assert config.validity is not None
    validity = config.validity.model_copy(update={"probes": ["prompt", "candidate_count"]})
    config = config.model_copy(update={"validity": validity})
    data = load_data(config.dataset)
    ctx = StageContext(config, data, split_data(data, config.split, config.seed))
    users = ctx.probe_users[: validity.users]
    rows: list[dict[str, Any]] = []
    for entry in (e for e in config.entries if e.name in ENTRIES):
        model = build_model(entry, config.seed)
        model.fit(ctx.split.train, ctx.split.valid)
        tic = time.perf_counter()
        result = evaluate_protocol(
            model,
            ctx.split,
            config.eval,
            entry.protocol,
            phase="test",
            seed=config.seed,
            users=users,
        )
        per_user_s = (time.perf_counter() - tic) / len(users)
        extra: dict[str, Any] = {}
        run_validity(entry, model, ctx, result, extra)
        seconds = extra["validity_s"]
        rows.append(
            {
                "entry": entry.name,
                "users": len(users),
                "evaluate_s_per_user": per_user_s,
                "prompt_s": seconds["prompt"],
                "candidate_count_s": seconds["candidate_count"],
                "prompt_ndcg": extra["prompt_sensitivity"]["ndcg"],
                "count_ndcg": extra["candidate_count"]["ndcg"],
                "count_random_ndcg": extra["candidate_count"]["random_ndcg"],
            }
        )
    load = os.getloadavg()[0]
    print(f"{'entry':16} {'s/user eval':>11} {'prompt s':>9} {'count s':>8}   (load {load:.1f})")
    for r in rows:
        print(
            f"{r['entry']:16} {r['evaluate_s_per_user']:11.2f} {r['prompt_s']:9.1f} "
            f"{r['candidate_count_s']:8.1f}"
        )
    total = sum(r["prompt_s"] + r["candidate_count_s"] for r in rows)
    print(f"both probes, both entries: {total:.1f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"load_1min": load, "total_s": total, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
