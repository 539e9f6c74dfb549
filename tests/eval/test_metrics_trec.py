"""Our ranking metrics against trec_eval (through pytrec_eval), to 1e-9.

How each trec_eval measure maps onto ours (binary relevance, the relevant items as qrels with
relevance 1, each ranked list as a run scored ``width - position`` so the order is ours):

- ``ndcg_cut_K`` = ``ndcg@K``: gain 1 per relevant item, discount ``1 / log2(rank + 1)``, over
  the ideal DCG of ``min(n_relevant, K)`` relevant items at the top. Same definition.
- ``recall_K`` = ``recall@K``: relevant items in the top K over all relevant items.
- ``P_K`` = ``precision@K``: relevant items in the top K over K, also when the list is shorter
  than K (trec_eval divides by the cutoff, not by what was retrieved; so do we).
- ``success_K`` = ``hr@K``: 1 if any relevant item is in the top K.
- ``recip_rank`` has no cutoff in trec_eval: it is 1 / rank of the first relevant item anywhere
  in the run. ``mrr@K`` is that with the run cut to its first K items, so the run is cut before
  trec_eval sees it.

Two further differences of form, not of definition: trec_eval breaks score ties by document id,
so every run here has distinct scores; and a user whose list is empty (all -1 padding) has no
run, for which trec_eval reports nothing — that user's figures are 0 on both sides.
"""

import numpy as np
import pytest

from llmrec.eval.metrics import Truth, per_user_metrics

pytrec_eval = pytest.importorskip("pytrec_eval")

KS = (1, 3, 5, 10, 20)
WIDTH = 10


def random_case(seed: int, max_relevant: int) -> tuple[np.ndarray, Truth]:
    """60 users, 40 items: ranked lists of width 10 without repeats, about a third of them
    short (-1 padding at the end, some all padding), and 1..max_relevant relevant items each,
    drawn so that some are in the list and some are not."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 60, 40
    ranked = np.stack([rng.permutation(n_items)[:WIDTH] for _ in range(n_users)])
    short = rng.random(n_users) < 0.35
    lengths = np.where(short, rng.integers(0, WIDTH, n_users), WIDTH)
    ranked[np.arange(WIDTH)[None, :] >= lengths[:, None]] = -1
    truth = []
    for row in ranked:
        n_rel = int(rng.integers(1, max_relevant + 1))
        listed = row[row >= 0]
        from_list = (
            rng.choice(
                listed, size=min(len(listed), int(rng.integers(0, n_rel + 1))), replace=False
            )
            if len(listed)
            else np.zeros(0, np.int64)
        )
        rest = np.setdiff1d(np.arange(n_items), from_list)
        extra = rng.choice(rest, size=n_rel - len(from_list), replace=False)
        truth.append(np.concatenate([from_list, extra]).astype(np.int64))
    return ranked, Truth.from_lists(truth)


def trec_figures(ranked: np.ndarray, truth: Truth) -> dict[str, np.ndarray]:
    """Our metric names -> per-user values computed by trec_eval."""
    qrels = {
        f"u{u}": {f"d{i}": 1 for i in truth.items[truth.indptr[u] : truth.indptr[u + 1]]}
        for u in range(len(ranked))
    }
    measures = {f"{m}.{k}" for m in ("ndcg_cut", "recall", "P", "success") for k in KS}
    full = _evaluate(qrels, _runs(ranked, WIDTH), measures)
    names = {"ndcg_cut": "ndcg", "recall": "recall", "P": "precision", "success": "hr"}
    out = {
        f"{ours}@{k}": np.array(
            [full.get(f"u{u}", {}).get(f"{m}_{k}", 0.0) for u in range(len(ranked))]
        )
        for m, ours in names.items()
        for k in KS
    }
    for k in KS:
        cut = _evaluate(qrels, _runs(ranked, k), {"recip_rank"})
        out[f"mrr@{k}"] = np.array(
            [cut.get(f"u{u}", {}).get("recip_rank", 0.0) for u in range(len(ranked))]
        )
    return out


def _runs(ranked: np.ndarray, depth: int) -> dict[str, dict[str, float]]:
    runs = {}
    for u, row in enumerate(ranked):
        items = [int(i) for i in row[:depth] if i >= 0]
        if items:
            runs[f"u{u}"] = {f"d{i}": float(WIDTH - pos) for pos, i in enumerate(items)}
    return runs


def _evaluate(qrels, runs, measures) -> dict[str, dict[str, float]]:
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(runs)


@pytest.mark.parametrize("max_relevant", [1, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_trec_eval(seed, max_relevant):
    ranked, truth = random_case(seed, max_relevant)
    ours = per_user_metrics(ranked, truth, KS)
    theirs = trec_figures(ranked, truth)
    assert set(theirs) == set(ours)
    for name, expected in theirs.items():
        np.testing.assert_allclose(ours[name], expected, rtol=0, atol=1e-9, err_msg=name)


def test_the_cases_cover_what_they_claim():
    ranked, truth = random_case(0, 5)
    hits = per_user_metrics(ranked, truth, (WIDTH,))["hr@10"]
    assert (ranked == -1).all(axis=1).any(), "a user with an empty list"
    assert ((ranked == -1).any(axis=1) & ~(ranked == -1).all(axis=1)).any(), "a short list"
    assert (truth.counts > 1).any() and (truth.counts == 1).any()
    assert 0 < hits.mean() < 1
