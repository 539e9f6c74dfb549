"""The validity probes' functions: invalid-output rates, history-length sensitivity, and the
prompt and candidate-count curves with their random-order expectation."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.dataset import UserHistory
from llmrec.eval.metrics import Truth, hit_matrix, ndcg
from llmrec.eval.protocols import truth_for
from llmrec.eval.validity import (
    candidate_count_curve,
    gain,
    history_length_curve,
    invalid_output,
    positions_of,
    prompt_sensitivity,
    random_gain,
    truncate_history,
)
from llmrec.experiment import SplitConfig, split_data
from llmrec.models.transition import Transition
from llmrec.testing import tiny_dataset


def test_invalid_output_rates() -> None:
    rates = invalid_output(
        {"unknown_ids": 3, "duplicates": 2, "short_lists": 1},
        n_users=10,
        k=10,
        ranker_stats={"users": 10, "candidates": 200, "unparseable": 2, "hallucinations": 4},
    )
    assert rates["invalid_rate"] == pytest.approx(0.03)
    assert rates["duplicate_rate"] == pytest.approx(0.02)
    assert rates["short_list_rate"] == pytest.approx(0.1)
    assert rates["unparsable_rate"] == pytest.approx(0.2)
    assert rates["hallucination_rate"] == pytest.approx(0.02)
    assert "unparsable_rate" not in invalid_output({}, n_users=0, k=10)


def test_truncate_history_keeps_the_most_recent_items() -> None:
    hist = UserHistory.from_rows([[1, 2, 3, 4], [], [5]], n_items=6)
    cut = truncate_history(hist, 2)
    assert cut.of(0).tolist() == [3, 4]
    assert cut.of(1).tolist() == [] and cut.of(2).tolist() == [5]
    assert truncate_history(hist, 10).of(0).tolist() == [1, 2, 3, 4]


def test_history_length_curve_ends_with_the_whole_history() -> None:
    data = tiny_dataset()
    split = split_data(data, SplitConfig(), 0)
    model = Transition({}).fit(split.train)
    known = split.known_at_test().history()
    users = split.test.active_users()[:10].astype(np.int64)
    truth = truth_for(users, split.test)
    curve = history_length_curve(model, users, known, truth, [1, 3])
    assert curve["lengths"] == [1.0, 3.0, 0.0]
    assert all(0.0 <= v <= 1.0 for v in curve["ndcg"])
    # the last point ("all") is the evaluation's own NDCG@10 on these users
    from llmrec.eval.protocols import evaluate

    full = evaluate(model, split, phase="test", ks=(10,), users=users)
    assert curve["ndcg"][-1] == pytest.approx(full.metrics["ndcg@10"])


def test_gain_is_the_ndcg_of_one_relevant_item() -> None:
    width = 12
    for position in range(1, width + 1):
        ranked = np.full((1, width), -1, dtype=np.int64)
        ranked[0, position - 1] = 7
        truth = Truth(np.array([0, 1]), np.array([7]))
        assert gain(np.array([position]))[0] == pytest.approx(
            ndcg(hit_matrix(ranked, truth), truth, 10)[0]
        )
    assert positions_of(np.array([[3, 7, -1], [1, 2, 3]]), np.array([7, 9])).tolist() == [2, 0]


@pytest.mark.parametrize("n", [3, 10, 20, 50])
def test_random_gain_is_the_mean_over_every_order(n: int) -> None:
    """Every position of the relevant item among n shuffled candidates is equally likely."""
    ndcg_v, hit_v = random_gain(np.array([1, n]), n)
    every = gain(np.arange(1, n + 1))
    assert ndcg_v == pytest.approx([every.mean(), every.mean()])
    assert hit_v == pytest.approx([(every > 0).mean()] * 2)


def test_random_gain_leaves_items_beyond_the_candidates_in_place() -> None:
    ndcg_v, hit_v = random_gain(np.array([7, 12, 0]), 5)
    assert ndcg_v == pytest.approx([gain(np.array([7]))[0], 0.0, 0.0])
    assert hit_v.tolist() == [1.0, 0.0, 0.0]


def test_prompt_sensitivity_reports_mean_spread_and_sd() -> None:
    positives = np.array([5, 6])
    lists = {  # the relevant item first, third, or missing, per variant
        "a": np.array([[5, 1, 2], [6, 1, 2]]),
        "b": np.array([[1, 2, 5], [1, 2, 6]]),
        "c": np.array([[1, 2, 3], [1, 2, 3]]),
    }
    got = prompt_sensitivity(lists.__getitem__, ["a", "b", "c"], positives)
    assert got["ndcg"] == pytest.approx([1.0, 0.5, 0.0])
    assert got["hit"] == [1.0, 1.0, 0.0]
    assert got["mean"] == pytest.approx(0.5)
    assert got["spread"] == pytest.approx(1.0)
    assert got["sd"] == pytest.approx(np.sqrt(1 / 6))


def test_candidate_count_curve_against_a_perfect_ranker() -> None:
    """A ranker that always finds the relevant item when it is among the n candidates: NDCG 1
    there, the item's own place otherwise; the random column stays what chance gives."""
    positives = np.array([5, 6])
    place = np.array([3, 8])  # where each relevant item was drawn

    def rank_with(n: int) -> tuple[np.ndarray, np.ndarray]:
        ranked = np.zeros((2, 10), dtype=np.int64)
        for row, (p, item) in enumerate(zip(place, positives, strict=True)):
            ranked[row, 0 if p <= n else p - 1] = item
        return ranked, place

    got = candidate_count_curve(rank_with, [2, 5, 10], positives)
    assert got["counts"] == [2.0, 5.0, 10.0]
    g3, g8 = gain(np.array([3, 8]))
    assert got["ndcg"] == pytest.approx([(g3 + g8) / 2, (1 + g8) / 2, 1.0])
    assert got["recall"] == [0.0, 0.5, 1.0]
    shuffled = [gain(np.arange(1, n + 1)).mean() for n in (2, 5, 10)]
    assert got["random_ndcg"] == pytest.approx([(g3 + g8) / 2, (shuffled[1] + g8) / 2, shuffled[2]])
    assert got["random_hit"] == pytest.approx([1.0, 1.0, 1.0])
