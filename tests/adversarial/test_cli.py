"""Command-line misuse and saved composites: argparse's usage errors are one line like every
other error, a saved two-stage cannot choose an import through its retriever, and a run record
says how many users the LM ranked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from llmrec.errors import ConfigError
from llmrec.lm.fake import FakeLM
from llmrec.models.base import CONFIG_FILE, Recommender
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import TwoStage, VerbaliserRanker
from llmrec.testing import tiny_dataset

from .conftest import assert_one_line_error, strict_json


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "--seed", "x"], ["--seed", "invalid int value", "llmrec run --help"]),
        (["bogus"], ["invalid choice", "llmrec --help"]),
        ([], ["required", "COMMAND"]),
        (["run", "--no-such-flag"], ["unrecognized arguments", "--no-such-flag"]),
        (["serve", "--max-queue", "abc"], ["serve", "--max-queue"]),
        (["results", "--last", "1.5"], ["--last"]),
    ],
    ids=["bad-int", "unknown-command", "no-command", "unknown-flag", "serve-flag-type", "float"],
)
def test_usage_errors_are_one_line(cli, args: list[str], fragments: list[str]) -> None:
    result = cli(*args)
    assert result.code == 2
    assert_one_line_error(result, *fragments)
    assert "usage:" not in result.err


def _saved_two_stage(tmp_path: Path) -> Path:
    ranker = VerbaliserRanker(lm=FakeLM())
    model = TwoStage(Popularity(), ranker, n_candidates=5).fit(tiny_dataset())
    return model.save(tmp_path / "two-stage")


def test_a_saved_two_stage_cannot_import_through_its_retriever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _saved_two_stage(tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "planted_retriever.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nclass Model: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    meta = json.loads((folder / CONFIG_FILE).read_text())
    meta["config"]["retriever"] = "planted_retriever:Model"
    (folder / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="not a registered model") as caught:
        Recommender.load(folder)
    assert "\n" not in str(caught.value)
    assert not marker.exists() and "planted_retriever" not in sys.modules


def test_a_run_record_says_how_many_users_the_lm_ranked(cli, tmp_path: Path) -> None:
    result = cli(
        "run",
        "--model", "two_stage",
        "--dataset", "synthetic:40x20x600",
        "--set", "params.n_candidates=20",
        "--set", "params.ranker.kind=verbaliser",
        "--set", "params.ranker.lm=fake",
        "--out", str(tmp_path / "runs"),
        "--store", str(tmp_path / "store.db"),
        "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    record = strict_json(result.out)
    assert isinstance(record, dict)
    diagnostics = record["extra"]["diagnostics"]
    assert diagnostics["lm_ranked"] > 0 and diagnostics["lm_ranked_none"] == 0
    assert (
        diagnostics["users"]
        == diagnostics["lm_ranked"] + diagnostics["few_candidates"] + (diagnostics["no_history"])
    )
