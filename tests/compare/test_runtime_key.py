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
