"""Runtime options are not part of a compare stage's identity."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llmrec.cli.compare_cmd import build_compare_config
from llmrec.compare.runner import stage_key
from llmrec.testing import tiny_dataset


def _args(config: Path, *flags: str) -> argparse.Namespace:
    from llmrec.cli import build_parser

    return build_parser().parse_args(["compare", "--config", str(config), *flags])


def test_stage_keys_are_the_same_with_1_and_2_threads(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "dataset: tiny\nruntime: {threads: 3}\n"
        "entries:\n  - {name: s, model: sasrec, params: {epochs: 1}}\n"
    )
    one, _ = build_compare_config(_args(config, "--threads", "1"))
    two, _ = build_compare_config(_args(config, "--threads", "2", "--device", "cpu"))
    assert (one.runtime.threads, two.runtime.threads, two.runtime.device) == (1, 2, "cpu")
    data = tiny_dataset()
    assert stage_key(one.entries[0], one, data) == stage_key(two.entries[0], two, data)


def test_an_old_threads_param_does_not_change_the_stage_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    body = "dataset: tiny\nentries:\n  - {{name: s, model: sasrec, params: {{{}}}}}\n"
    config.write_text(body.format("epochs: 1"))
    new, _ = build_compare_config(_args(config))
    config.write_text(body.format("epochs: 1, threads: 1"))
    old, _ = build_compare_config(_args(config))
    data = tiny_dataset()
    assert stage_key(new.entries[0], new, data) == stage_key(old.entries[0], old, data)


def test_compare_refuses_an_unknown_dtype(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _args(tmp_path / "c.yaml", "--dtype", "int8")


def test_the_later_split_options_keep_old_keys_until_set(tmp_path: Path) -> None:
    """``split.core`` and ``split.ties`` at their defaults leave a stage's key as it was before
    they existed (the key below is composed the old way); set, they change it."""
    import hashlib
    import json

    from llmrec.compare import load_compare_config

    raw = {"dataset": "tiny", "entries": [{"name": "p", "model": "popularity"}]}
    config = load_compare_config(raw)
    data = tiny_dataset()
    entry = config.entries[0]
    old_parts = {
        "entry": entry.model_dump(mode="json", exclude={"enabled", "pipeline"}),
        "dataset": [data.name, data.n_users, data.n_items, data.n_interactions],
        "split": {"kind": "loo", "valid_frac": 0.1, "test_frac": 0.1, "min_history": 3},
        "eval": config.eval.model_dump(mode="json"),
        "probes": config.probes.model_dump(mode="json"),
        "seed": 0,
    }
    old_key = hashlib.sha256(json.dumps(old_parts, sort_keys=True).encode()).hexdigest()[:16]
    assert stage_key(entry, config, data) == old_key
    cored = load_compare_config({**raw, "split": {"kind": "loo", "core": 2}})
    assert stage_key(cored.entries[0], cored, data) != old_key


def test_cuda_without_a_gpu_stops_compare_in_one_line_before_any_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmrec import runtime
    from llmrec.cli import main

    monkeypatch.setattr(runtime, "_cuda", lambda: (False, 0))
    config = tmp_path / "c.yaml"
    config.write_text("dataset: tiny\nentries:\n  - {name: s, model: sasrec}\n")
    out = tmp_path / "out"
    assert main(["compare", "--config", str(config), "--out", str(out), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmrec: error: device 'cuda' asked for")
    assert not out.exists()
