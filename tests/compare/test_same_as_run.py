"""A compare stage is judged as ``llmrec run`` judges a run: the same evaluation settings,
model building, metrics and cold slices (``llmrec.experiment``), so the same seed gives the
same numbers through either door."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmrec.compare.config import CompareConfig, EvalSettings
from llmrec.compare.runner import run_compare
from llmrec.errors import ConfigError
from llmrec.experiment import EvalConfig, EvalOptions, RunConfig, run_experiment

DATA = "synthetic:80x60x1500"


def test_run_and_compare_share_one_evaluation_config() -> None:
    assert issubclass(EvalSettings, EvalOptions) and issubclass(EvalConfig, EvalOptions)
    shared = set(EvalOptions.model_fields)
    assert shared <= set(EvalSettings.model_fields) and shared <= set(EvalConfig.model_fields)


@pytest.mark.parametrize("ks", [[], [0, 10], [10, 10_001]])
def test_both_refuse_the_same_bad_cutoffs(ks: list[int]) -> None:
    from llmrec.config import validated

    with pytest.raises(ConfigError, match=r"eval\.ks"):
        validated(RunConfig, {"eval": {"ks": ks}}, "run")
    with pytest.raises(ConfigError, match=r"eval\.ks"):
        validated(CompareConfig, {"eval": {"ks": ks}, "entries": []}, "compare")


@pytest.mark.parametrize(("model", "protocol"), [("itemknn", "full"), ("bpr", "candidates")])
def test_a_stage_measures_what_a_run_measures(model: str, protocol: str, tmp_path: Path) -> None:
    # seed 0: llmrec run draws a synthetic dataset with seed 0 whatever its seed, compare with
    # its own seed (a difference left as it is, so that old results stay reproducible)
    params = {"epochs": 2} if model == "bpr" else {}
    run = run_experiment(
        RunConfig(
            dataset=DATA,
            model=model,
            params=params,
            eval=EvalConfig(protocol=protocol, n_negatives=9),
            seed=0,
            save_model=False,
        ),
        run_dir=tmp_path / "run",
    )
    config = CompareConfig.model_validate(
        {
            "dataset": DATA,
            "seed": 0,
            "seeds": 1,
            "eval": {"n_negatives": 9},
            "probes": {"sample_users": 5, "latency_users": 2, "probe_users": 4, "slots": [0]},
            "entries": [{"name": "m", "model": model, "params": params, "protocol": protocol}],
        }
    )
    run_compare(config, tmp_path / "cmp")
    stage = json.loads((tmp_path / "cmp" / "stages" / "m" / "record.json").read_text())
    shared = [k for k in run.metrics if "@" in k and not k.startswith("valid_")]
    assert {"ndcg@10", "recall@20", "cold_users_ndcg@10"} <= set(shared)
    for key in shared:
        ran, staged = run.metrics[key], stage["metrics"][key]
        if math.isnan(ran):  # an empty slice: NaN in the record, null in its JSON
            assert staged is None, key
        else:
            assert staged == pytest.approx(ran, abs=1e-12), key
