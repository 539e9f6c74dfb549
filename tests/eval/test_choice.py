"""The choice rule: the cheapest of the entries tied with the best, said in one sentence."""

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.eval.choice import Entry, choose


def base(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(n) < 0.2) / np.log2(rng.integers(1, 11, n) + 1)


def noisy(values: np.ndarray, shift: float, seed: int) -> np.ndarray:
    return values + np.random.default_rng(seed).normal(shift, 0.05, len(values))


def test_a_tied_cheaper_entry_is_chosen_with_its_evidence():
    x = noisy(base(), 0.0, 1)
    jitter = np.random.default_rng(2).normal(0, 0.03, len(x))
    jitter += -0.001 - jitter.mean()  # a mean difference of exactly -0.001, ~0.6 SE
    entries = [
        Entry("sasrec", x, latency_ms=37.0),
        Entry("textknn", x + jitter, latency_ms=3.1),
        Entry("popularity", x * 0.5, latency_ms=0.2),
    ]
    c = choose(entries)
    assert (c.best, c.chosen) == ("sasrec", "textknn")
    assert c.tied == ("sasrec", "textknn")
    assert c.sentence.startswith(
        "textknn is chosen: it ties sasrec on ndcg@10 (textknn minus sasrec -0.00"
    )
    assert "after Holm" in c.sentence and "faster per user (latency 3.1 ms vs 37 ms)" in c.sentence
    assert c.mde is not None and 0 < c.mde < 0.05


def test_a_significantly_better_entry_is_kept_whatever_it_costs():
    x = base()
    entries = [Entry("sasrec", x + 0.05, latency_ms=37.0), Entry("pop", x, latency_ms=0.2)]
    c = choose(entries)
    assert c.chosen == "sasrec" and c.tied == ("sasrec",)
    assert "ahead of the runner-up pop" in c.sentence and "p<0.001" in c.sentence


def test_no_entry_is_preferred_on_a_non_significant_difference_without_a_cost_reason():
    x = base()
    c = choose([Entry("a", noisy(x, 0.0, 3)), Entry("b", noisy(x, 0.0, 4))])
    assert len(c.tied) == 2
    assert "cannot tell them apart" in c.sentence


def test_seed_arrays_are_averaged_and_users_aligned():
    x = base(120)
    users = np.arange(120)
    order = np.random.default_rng(5).permutation(120)
    seeds = np.stack([noisy(x, 0.0, s) for s in range(3)])
    a = choose([Entry("s", seeds, users=users), Entry("p", x * 0.3, users=users)])
    b = choose([Entry("s", seeds, users=users), Entry("p", (x * 0.3)[order], users=order)])
    assert a.versus == b.versus and a.means == pytest.approx(b.means)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "no entry"),
        ([Entry("a", np.zeros(3)), Entry("a", np.zeros(3))], "repeat"),
        ([Entry("a", np.zeros(3)), Entry("b", np.zeros(4))], "same users"),
        ([Entry("a", np.zeros(3), users=np.arange(3)), Entry("b", np.zeros(3))], "every entry"),
        (
            [Entry("a", np.zeros(3), users=np.arange(3)), Entry("b", np.zeros(3), users=[1, 2, 3])],
            "other users",
        ),
        ([Entry("a", np.array([0.1, np.nan]))], "NaN"),
    ],
)
def test_bad_entries_are_one_line_errors(entries, message):
    with pytest.raises(ConfigError, match=message) as info:
        choose(entries)
    assert "\n" not in str(info.value)


def test_benjamini_hochberg_is_available_and_named():
    x = base()
    c = choose([Entry("a", x + 0.05), Entry("b", x)], correction="bh")
    assert "after Benjamini-Hochberg" in c.sentence
