"""``llmrec compare`` and ``llmrec report`` end to end on small synthetic data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from llmrec.cli import main
from llmrec.compare import load_compare_config, preset_config
from llmrec.compare.config import PRESETS
from llmrec.errors import ConfigError
from llmrec.models.registry import MODELS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    config = {
        "dataset": "synthetic:60x40x600",
        "eval": {"n_negatives": 9},
        "probes": {"sample_users": 10, "latency_users": 3, "probe_users": 5, "slots": [0, 9]},
        "entries": [
            {"name": "pop", "paradigm": "classic", "model": "popularity"},
            {"name": "knn", "paradigm": "classic", "model": "itemknn"},
            {
                "name": "rerank",
                "paradigm": "direct",
                "model": "two_stage",
                "protocol": "two-stage",
                "sample": True,
                "params": {"n_candidates": 8, "ranker": {"kind": "verbaliser", "lm": "fake"}},
            },
        ],
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_compare_then_report_rerenders_with_new_constraints(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["compare", "--config", str(config_file), "--out", str(out)]
    argv += ["--store", str(tmp_path / "r.sqlite"), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in summary["stages"]] == ["done", "done", "done"]
    assert (out / "report.html").is_file()
    assert summary["choice"]["recommended"] in {"pop", "knn", "rerank"}

    assert main(["report", str(out), "--latency-budget-ms", "0.000001", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["choice"]["recommended"] is None
    assert again["choice"]["constraints"]["latency_budget_ms"] == 1e-6

    # resuming: nothing is refitted
    assert main(argv) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in resumed["stages"]] == ["cached"] * 3


def test_only_runs_the_named_entries(config_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "only"
    argv = ["compare", "--config", str(config_file), "--out", str(out), "--only", "pop"]
    assert main([*argv, "--store", str(tmp_path / "r.sqlite")]) == 0
    text = capsys.readouterr().out
    assert "pop" in text and "disabled" in text


def test_user_errors_are_one_line(config_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a compare folder" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries: [{name: x, paradigm: quantum, model: popularity}]\n")
    assert main(["compare", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "entries.0.paradigm" in capsys.readouterr().err


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_presets_are_valid_and_name_registered_models(preset: str) -> None:
    config = preset_config(preset)
    assert config.entries
    for entry in config.entries:
        assert entry.model in MODELS, entry.model
    assert any(e.paradigm == "direct" for e in config.entries)
    assert {"classic", "embeddings", "tokens", "direct"} <= {e.paradigm for e in config.entries}


def test_config_is_strict() -> None:
    with pytest.raises(ConfigError, match="nope"):
        load_compare_config({"nope": 1})
    with pytest.raises(ConfigError, match="unique"):
        load_compare_config(
            {"entries": [{"name": "a", "paradigm": "classic", "model": "popularity"}] * 2}
        )
    with pytest.raises(ConfigError, match="include 10"):
        load_compare_config({"eval": {"ks": [5]}})


def test_presets_load_without_the_repository(tmp_path: Path) -> None:
    """The presets are package data: a copy of the package alone (no ``configs/``, another
    working directory) loads them, and ``pyproject.toml`` ships them."""
    shutil.copytree(REPO / "llmrec", tmp_path / "llmrec", ignore=shutil.ignore_patterns("*.pyc"))
    code = "from llmrec.compare import quick_config; print(len(quick_config('x').entries))"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(preset_config("quick").entries) > 2
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "presets/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["llmrec.compare"]


def test_unknown_preset_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="unknown compare preset 'huge'"):
        preset_config("huge")


def test_preset_option_runs_a_shipped_preset(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ml1m"
    argv = ["compare", "--preset", "ml-1m", "--dataset", "synthetic:60x40x600"]
    argv += ["--only", "popularity", "--out", str(out), "--store", str(tmp_path / "r.sqlite")]
    assert main([*argv, "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    names = [e.name for e in preset_config("ml-1m").entries]
    assert [s["name"] for s in stages] == names
    assert [s["name"] for s in stages if s["status"] == "done"] == ["popularity"]


def test_ml1m_preset_is_movielens_1m_with_film_facts_and_sampled_lm_rankers() -> None:
    config = preset_config("ml-1m")
    assert config.dataset == "ml-1m+wikidata"
    lm = [e for e in config.entries if e.model == "two_stage"]
    assert lm and all(e.sample for e in lm)
    assert {e.protocol for e in lm} == {"two-stage", "candidates"}
    classic = {e.model for e in config.entries if e.paradigm == "classic"}
    assert {"popularity", "itemknn", "transition", "sasrec"} <= classic


def test_ml1m_preset_trains_the_sasrec_family_as_the_benchmark_and_reproduce_do() -> None:
    """One set of ML-1M SASRec settings: the preset's (sasrec and token-sasrec), `llmrec
    reproduce`'s and benchmarks/bench_ml1m.py's, whose timing they cite."""
    from llmrec.reproduce import SASREC_ML1M

    family = [e for e in preset_config("ml-1m").entries if e.model in ("sasrec", "token-sasrec")]
    assert len(family) == 2
    for entry in family:
        assert {k: entry.params[k] for k in SASREC_ML1M} == SASREC_ML1M


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--quick", "--preset", "full"], "not --quick and --preset"),
        (["--preset", "huge"], "unknown compare preset 'huge'"),
    ],
)
def test_preset_errors_are_one_line(flags: list[str], said: str, tmp_path: Path, capsys) -> None:
    assert main(["compare", *flags, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1
