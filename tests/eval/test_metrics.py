"""Metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from llmrec.eval import metrics as M


def test_ndcg_single_relevant_item_at_rank_three():
    ranked = np.array([[5, 7, 9, 1]])
    truth = M.Truth.from_lists([[9]])
    hits = M.hit_matrix(ranked, truth)
    assert hits.tolist() == [[False, False, True, False]]
    assert M.ndcg(hits, truth, 10)[0] == pytest.approx(1 / math.log2(4))
    assert M.ndcg(hits, truth, 2)[0] == 0.0
    assert M.mrr(hits, 10)[0] == pytest.approx(1 / 3)
    assert M.hit_rate(hits, 3)[0] == 1.0
    assert M.recall(hits, truth, 3)[0] == 1.0


def test_ndcg_with_two_relevant_items_uses_ideal_of_two():
    ranked = np.array([[1, 2, 3]])
    truth = M.Truth.from_lists([[1, 3]])
    hits = M.hit_matrix(ranked, truth)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert M.ndcg(hits, truth, 3)[0] == pytest.approx(dcg / idcg)
    assert M.recall(hits, truth, 1)[0] == pytest.approx(0.5)
    assert M.precision(hits, 3)[0] == pytest.approx(2 / 3)


def test_padding_never_counts_as_a_hit():
    ranked = np.array([[-1, -1], [4, -1]])
    truth = M.Truth.from_lists([[0], [4]])
    hits = M.hit_matrix(ranked, truth)
    assert hits.tolist() == [[False, False], [True, False]]


def test_rows_are_independent():
    ranked = np.array([[1, 2], [2, 1]])
    truth = M.Truth.from_lists([[2], [2]])
    hits = M.hit_matrix(ranked, truth)
    assert M.mrr(hits, 2).tolist() == [0.5, 1.0]


def test_coverage_and_gini():
    ranked = np.array([[0, 1], [0, 1]])
    assert M.coverage(ranked, 4) == 0.5
    even = np.array([[0, 1], [2, 3]])
    assert M.gini(even, 4) == pytest.approx(0.0)
    assert M.gini(ranked, 4) == pytest.approx(0.5)


def test_average_popularity_ignores_padding():
    pop = np.array([10.0, 2.0, 0.0])
    ranked = np.array([[0, 1], [2, -1]])
    assert M.average_popularity(ranked, pop).tolist() == [6.0, 0.0]


def test_per_user_metrics_keys():
    out = M.per_user_metrics(np.array([[1, 2]]), M.Truth.from_lists([[2]]), (1, 2))
    assert out["hr@1"][0] == 0.0 and out["hr@2"][0] == 1.0
    assert set(out) >= {"ndcg@1", "recall@2", "mrr@2", "precision@1"}


def test_ndcg_at_an_absurd_cutoff_equals_ndcg_over_the_whole_list():
    """Discounts once had ``k`` entries: ``k=10**12`` tried to allocate 8 TB."""
    ranked = np.array([[5, 7, 9, 1], [2, -1, -1, -1]])
    truth = M.Truth.from_lists([[9, 1, 3], [8]])
    hits = M.hit_matrix(ranked, truth)
    np.testing.assert_allclose(M.ndcg(hits, truth, 10**12), M.ndcg(hits, truth, 4))
    dcg, idcg = 1 / math.log2(4) + 1 / math.log2(5), 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg(hits, truth, 10**12)[0] == pytest.approx(dcg / idcg)
