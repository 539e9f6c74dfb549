"""The disk cache: hits, resume after an interruption, nothing stored from a failed call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.errors import BackendError
from llmrec.lm.cache import CachedLM
from llmrec.lm.fake import FakeLM

TEXTS = [f"item {i} about topic {i % 7}" for i in range(50)]


def test_encode_hits_and_equal_answers(tmp_path: Path) -> None:
    inner = FakeLM()
    lm = CachedLM(inner, tmp_path, chunk_size=16)
    first = lm.encode(TEXTS)
    assert lm.stats.cache_hits == 0 and inner.stats.calls == 4
    again = CachedLM(FakeLM(), tmp_path).encode([*TEXTS[10:20], "new text"])
    np.testing.assert_array_equal(again[:10], first[10:20])
    second = lm.encode(TEXTS)
    np.testing.assert_array_equal(first, second)
    assert lm.stats.cache_hits == 50 and inner.stats.calls == 4
    assert len(lm) == 51


def test_only_uncached_texts_reach_the_inner_model(tmp_path: Path) -> None:
    lm = CachedLM(FakeLM(), tmp_path)
    lm.encode(TEXTS[:30])
    fresh = FakeLM()
    lm2 = CachedLM(fresh, tmp_path)
    out = lm2.encode(TEXTS + TEXTS[:5])  # duplicates in one call are computed once
    assert fresh.stats.prompt_tokens == sum(fresh.count_tokens(TEXTS[30:]))
    assert lm2.stats.cache_hits == 35
    np.testing.assert_array_equal(out, FakeLM().encode(TEXTS + TEXTS[:5]))


def test_resume_after_interruption(tmp_path: Path) -> None:
    broken = CachedLM(FakeLM(fail_after=2), tmp_path, chunk_size=10)
    with pytest.raises(BackendError):
        broken.encode(TEXTS)
    assert len(broken) == 20  # two chunks committed before the failure
    broken.close()
    fresh = FakeLM()
    lm = CachedLM(fresh, tmp_path, chunk_size=10)
    out = lm.encode(TEXTS)
    assert lm.stats.cache_hits == 20 and fresh.stats.calls == 3
    np.testing.assert_array_equal(out, FakeLM().encode(TEXTS))


def test_nothing_cached_from_a_failed_call(tmp_path: Path) -> None:
    lm = CachedLM(FakeLM(fail_on="boom"), tmp_path)
    with pytest.raises(BackendError):
        lm.generate(["fine", "boom"])
    with pytest.raises(BackendError):
        lm.loglikelihood("prompt", [" ok", " boom"])
    with pytest.raises(BackendError):
        lm.score_next_batch(["A. x\nboom"], [" A"])
    assert len(lm) == 0


def test_keys_separate_models_verbs_and_parameters(tmp_path: Path) -> None:
    a = CachedLM(FakeLM(seed=0), tmp_path)
    b = CachedLM(FakeLM(seed=1), tmp_path)
    assert not np.allclose(a.encode(["x y"]), b.encode(["x y"]))
    assert b.stats.cache_hits == 0
    a.encode(["x y"], pooling="last")
    assert a.stats.cache_hits == 0
    a.generate(["p q r s"], seed=1)
    a.generate(["p q r s"], seed=2, temperature=1.0)
    assert a.stats.cache_hits == 0


def test_generate_score_and_loglikelihood_round_trip(tmp_path: Path) -> None:
    prompt = "liked: star wars\nA. star trek\nB. toy story\nAnswer:"
    ref = FakeLM()
    lm = CachedLM(FakeLM(), tmp_path)
    for _ in range(2):
        assert lm.generate([prompt], seed=4) == ref.generate([prompt], seed=4)
        np.testing.assert_array_equal(
            lm.score_next(prompt, [" A", " B"]), ref.score_next(prompt, [" A", " B"])
        )
        np.testing.assert_array_equal(
            lm.loglikelihood(prompt, [" star", " x"]), ref.loglikelihood(prompt, [" star", " x"])
        )
    assert lm.stats.cache_hits == 1 + 1 + 2


def test_empty_inputs(tmp_path: Path) -> None:
    lm = CachedLM(FakeLM(dim=5), tmp_path)
    assert lm.encode([]).shape == (0, 5)
    assert lm.generate([]) == []
    assert lm.score_next_batch([], [" A"]).shape == (0, 1)
    assert lm.loglikelihood("p", []).shape == (0,)
    lm.close()
    lm.close()


def test_a_cache_written_by_earlier_llmrec_is_read(tmp_path: Path) -> None:
    """The key (sha256 of model id, verb, parameters, input) is pinned: a row stored under the
    key llmrec 0.x derived for ``FakeLM(dim=16).encode(["a b"])`` is what the cache answers."""
    import sqlite3

    key = "4096a286b6a38bdfeaed234c357f967b53ed213b66624f8ec10119239bfb155a"
    stored = np.full(16, 0.25, dtype=np.float32)
    db = sqlite3.connect(tmp_path / "lm-cache.sqlite")
    db.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value BLOB)")
    db.execute("INSERT INTO answers VALUES (?, ?)", (key, stored.tobytes()))
    db.commit()
    db.close()
    inner = FakeLM(dim=16)
    vecs = CachedLM(inner, tmp_path).encode(["a b"])
    np.testing.assert_array_equal(vecs[0], stored)
    assert inner.stats.calls == 0 and inner.stats.cache_hits == 1


def test_loglikelihood_batch_caches_each_row_and_sends_only_misses(tmp_path: Path) -> None:
    class Recording(FakeLM):
        asked: list[tuple[list[str], list[list[str]]]]

        def loglikelihood_batch(self, prompts, continuations):
            self.asked.append((list(prompts), [list(c) for c in continuations]))
            return super().loglikelihood_batch(prompts, continuations)

    inner = Recording()
    inner.asked = []
    lm = CachedLM(inner, tmp_path)
    ref = FakeLM()
    prompts = ["liked: star wars", "liked: toy story", "liked: heat"]
    conts = [[" star", " x"], [" toy", " y", " z"], [" heat"]]
    lm.loglikelihood(prompts[0], [" star"])  # the one-prompt verb's rows serve the batch
    lm.loglikelihood_batch(prompts[1:2], [[" y"]])
    inner.asked.clear()
    hits = lm.stats.cache_hits
    got = lm.loglikelihood_batch(prompts, conts)
    for g, p, c in zip(got, prompts, conts, strict=True):
        np.testing.assert_array_equal(g, ref.loglikelihood(p, c))
    # one inner call, holding only the rows not cached, grouped by prompt
    assert inner.asked == [(prompts, [[" x"], [" toy", " z"], [" heat"]])]
    assert lm.stats.cache_hits == hits + 2
    again = lm.loglikelihood_batch(prompts, conts)
    assert len(inner.asked) == 1  # everything cached now
    for a, g in zip(again, got, strict=True):
        np.testing.assert_array_equal(a, g)
    assert lm.loglikelihood_batch([], []) == []
    with pytest.raises(BackendError, match="1 prompt"):
        lm.loglikelihood_batch(prompts[:1], conts)


def test_loglikelihood_batch_stores_nothing_from_a_bad_answer(tmp_path: Path) -> None:
    class Broken(FakeLM):
        def loglikelihood_batch(self, prompts, continuations):
            return [np.full(len(c), np.nan, dtype=np.float32) for c in continuations]

    lm = CachedLM(Broken(), tmp_path)
    with pytest.raises(BackendError):
        lm.loglikelihood_batch(["p"], [[" a", " b"]])
    assert len(lm) == 0
