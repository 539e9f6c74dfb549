"""The validity probes' functions: invalid-output rates and history-length sensitivity."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.dataset import UserHistory
from llmrec.eval.protocols import truth_for
from llmrec.eval.validity import history_length_curve, invalid_output, truncate_history
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
