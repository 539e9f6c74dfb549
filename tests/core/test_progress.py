"""``llmrec.progress``: silent by default, plain lines off a terminal, one bar at a time,
estimates before LM work and the measured rate kept for next time."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from llmrec import progress
from llmrec.progress import LMWork

WORK = LMWork.of("ranking", "smollm2-135m", "verbaliser", unit="user")


def test_silent_unless_enabled(capsys: pytest.CaptureFixture[str]) -> None:
    assert not progress.is_enabled()
    assert list(progress.track(range(3), desc="x")) == [0, 1, 2]
    with progress.phase("rank", 10, work=WORK) as bar:
        bar.update(10, loss=0.5)
    assert capsys.readouterr() == ("", "")


def test_plain_lines_at_a_steady_pace_without_carriage_returns() -> None:
    out = io.StringIO()
    with progress.reporting(out, live=False):
        for _ in progress.batches(1000, 7, desc="evaluate test", unit="user"):
            pass
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert 10 <= len(lines) <= 12  # a line per tenth, and the final one
    assert lines[-1].startswith("evaluate test: 100%") and "1000/1000" in lines[-1]


def test_reporting_restores_the_state_before() -> None:
    with progress.reporting(io.StringIO()):
        assert progress.is_enabled()
    assert not progress.is_enabled()


def test_nested_phase_is_silent_and_hands_its_lm_to_the_showing_one(tmp_path: Path) -> None:
    out = io.StringIO()
    with progress.reporting(out, live=False, prefix="[p] "):
        for rows in progress.batches(943, 100, desc="evaluate valid", unit="user"):
            for _ in progress.batches(rows.stop - rows.start, 8, desc="rank", work=WORK):
                pass
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "[p] ranking 943 users with smollm2-135m (verbaliser), about 17 min from the rough "
        "figure for this model"
    )
    assert not any(line.startswith("rank") for line in lines)
    assert sum("[p] " in line for line in lines) == 1  # the estimate once, not per chunk


def test_measured_rate_is_stored_and_used_next_time(tmp_path: Path) -> None:
    rates = tmp_path / "rates.json"
    work = LMWork.of("ranking", "fake", "verbaliser", unit="user")
    with progress.reporting(io.StringIO(), live=False, rates=rates):
        for _ in progress.batches(50, 10, desc="rank", work=work):
            pass
    stored = json.loads(rates.read_text())["ranking:verbaliser:fake"]
    assert stored["n"] == 50 and stored["unit"] == "user" and stored["seconds_per_unit"] > 0
    out = io.StringIO()
    with progress.reporting(out, live=False, rates=rates), progress.phase("rank", 20, work=work):
        pass
    assert "ranking 20 users with fake (verbaliser), about" in out.getvalue()
    assert "at the last measured rate" in out.getvalue()


def test_unknown_lm_says_no_rate_yet_and_a_damaged_rates_file_is_ignored(tmp_path: Path) -> None:
    rates = tmp_path / "rates.json"
    rates.write_text("{not json")
    out = io.StringIO()
    tags = LMWork.of("tagging", "fake", "tags")
    with progress.reporting(out, live=False, rates=rates), progress.phase("tags", 5, work=tags):
        pass
    assert "tagging 5 its with fake (tags); no rate measured here yet" in out.getvalue()


def test_interrupted_phase_stores_no_rate_and_ends_its_line(tmp_path: Path) -> None:
    rates = tmp_path / "rates.json"
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), progress.reporting(out, live=False, rates=rates):
        for rows in progress.batches(100, 10, desc="rank", work=WORK):
            if rows.start == 50:
                raise KeyboardInterrupt
    assert not rates.exists()
    assert out.getvalue().splitlines()[-1].endswith("(stopped)")


def test_training_epochs_show_loss_and_best_so_far() -> None:
    from llmrec.models._torch import TorchConfig, train_loop

    scores = iter([0.1, 0.3, 0.2, 0.25])
    out = io.StringIO()
    with progress.reporting(out, live=False):
        log = train_loop(
            TorchConfig(epochs=4, patience=5),
            run_epoch=lambda epoch: 1.0 / (epoch + 1),
            evaluate=lambda: next(scores),
            snapshot=dict,
            restore=lambda _state: None,
        )
    assert log.best_epoch == 2
    last = out.getvalue().splitlines()[-1]
    assert "4/4" in last and "loss=0.25" in last and "ndcg@10=0.25" in last
    assert "best=0.3000@2" in last


def test_catalogue_encoding_reports_texts_done_and_is_silent_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder

    texts = [f"item {i}" for i in range(600)]
    encoder = TextEncoder(EncoderConfig(encoder="fake:8", cache=False, chunk_size=100))
    encoder.encode(texts)
    assert capsys.readouterr() == ("", "")  # library use stays quiet
    out = io.StringIO()
    with progress.reporting(out, live=False):
        vectors, _ = encoder.encode(texts, desc="encoding items")
    lines = out.getvalue().splitlines()
    assert vectors.shape == (600, 8)
    assert any(line.startswith("encoding 600 texts with fake:8") for line in lines), lines
    assert lines[-1].startswith("encoding items: 100%") and "600/600" in lines[-1]
    forced = TextEncoder(
        EncoderConfig(encoder="fake:8", cache=False, chunk_size=100, progress=True)
    )
    forced.encode(texts)  # RuntimeOptions(progress=True) shows it in library use too
    assert "600/600" in capsys.readouterr().err
