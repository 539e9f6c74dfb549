"""``llmrec reproduce``: the anchors' protocols as llmrec options, on small synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.cli.reproduce_cmd import ANCHOR_NAMES
from llmrec.reproduce import ANCHORS, ReproduceConfig, reproduce

DATA = "synthetic:60x40x600"


def rows_of(anchor: str, **options: object) -> list[dict]:
    config = ReproduceConfig.model_validate({"anchor": anchor, "dataset": DATA, **options})
    return reproduce(config)


def test_the_cli_lists_every_anchor():
    assert tuple(ANCHORS) == ANCHOR_NAMES


def test_a_window_as_long_as_every_history_is_the_strict_protocol():
    rows = rows_of("hstu-ml1m", epochs=1)
    assert [r["model"] for r in rows if r["protocol"] == "paper"] == list(
        ANCHORS["hstu-ml1m"].paper
    )
    ours = {r["protocol"]: r for r in rows if r["protocol"] != "paper"}
    assert set(ours) == {"hstu-ml1m", "strict"}
    # synthetic users hold ~10 items: the last 200 are all of them, so the masks agree
    assert ours["hstu-ml1m"]["ndcg@10"] == pytest.approx(ours["strict"]["ndcg@10"])
    assert ours["hstu-ml1m"]["users"] == ours["strict"]["users"] > 0
    assert 0 <= ours["strict"]["recall@10"] <= 1


def test_llamarec_filters_before_splitting_and_trains_twice():
    rows = rows_of("llamarec-ml100k", epochs=1)
    ours = {r["protocol"]: r for r in rows if r["protocol"] != "paper"}
    assert ours["llamarec-ml100k"]["users"] <= ours["strict"]["users"]
    assert ours["llamarec-ml100k"]["fit_cpu_s"] > 0 and ours["strict"]["fit_cpu_s"] > 0


def test_llmrank_scores_candidates_on_the_paper_scale_for_a_user_sample():
    rows = rows_of("llmrank-ml1m", epochs=1, users=12, lm="fake")
    ours = [r for r in rows if r["protocol"] == "llmrank-ml1m"]
    assert [r["model"] for r in ours] == [
        "SASRec (ours)",
        "popularity (ours)",
        "fake zero-shot (ours)",
    ]
    assert all(r["users"] == 12 and 0 <= r["ndcg@10"] <= 100 for r in ours)
    strict = [r for r in rows if r["protocol"] == "strict"]
    assert strict[0]["users"] == 12


def test_cli_prints_one_table_and_json(tmp_path: Path, capsys) -> None:
    argv = ["reproduce", "llmrank-ml1m", "--dataset", DATA, "--epochs", "1", "--users", "5"]
    assert main([*argv, "--no-lm", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ChatGPT" in out and "popularity (ours)" in out and "x 100" in out
    assert main([*argv, "--no-lm", "--quiet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["anchor"] == "llmrank-ml1m" and len(data["rows"]) == 5 + 3


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["reproduce", "sasrec-2018"], "unknown anchor 'sasrec-2018'"),
        (["reproduce", "hstu-ml1m", "--epochs", "0"], "epochs"),
    ],
)
def test_bad_options_are_one_line(argv: list[str], said: str, capsys) -> None:
    assert main([*argv, "--dataset", DATA]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1


def test_a_saved_model_of_another_catalogue_is_refused(tmp_path: Path, capsys) -> None:
    from llmrec.data import load_dataset
    from llmrec.data.splits import leave_one_out
    from llmrec.models import create_model

    split = leave_one_out(load_dataset("synthetic:30x25x300"))
    create_model("popularity", {}).fit(split.train).save(tmp_path / "m")
    argv = ["reproduce", "hstu-ml1m", "--dataset", DATA, "--model", str(tmp_path / "m")]
    assert main(argv) == 2
    assert "knows 25 items" in capsys.readouterr().err
