"""The fake backend: deterministic, fast and behaviourally sensible."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import BackendError, ConfigError
from llmrec.lm.fake import FakeLM

PROMPT = (
    "The user liked: star wars, alien, blade runner.\n"
    "A. toy story\n"
    "B. star trek alien\n"
    "C. pride and prejudice\n"
    "Answer:"
)


def test_encode_shape_unit_norm_and_empty() -> None:
    lm = FakeLM(dim=16)
    vecs = lm.encode(["a b", "c", ""])
    assert vecs.shape == (3, 16) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert lm.encode([]).shape == (0, 16)


def test_encode_shared_words_are_closer() -> None:
    lm = FakeLM(dim=64)
    a, b, c = lm.encode(["star wars empire", "star wars return", "pride and prejudice"])
    assert a @ b > a @ c
    assert a @ b > b @ c


def test_encode_deterministic_and_seed_dependent() -> None:
    one = FakeLM(seed=1).encode(["hello world"])
    np.testing.assert_array_equal(one, FakeLM(seed=1).encode(["hello world"]))
    assert not np.allclose(one, FakeLM(seed=2).encode(["hello world"]))


def test_score_next_prefers_overlapping_candidate() -> None:
    lm = FakeLM()
    scores = lm.score_next(PROMPT, [" A", " B", " C"])
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == 1
    assert np.all(scores < 0) and np.logaddexp.reduce(scores) < 0
    np.testing.assert_array_equal(scores, lm.score_next(PROMPT, [" A", " B", " C"]))


def test_score_next_rejects_multi_token_labels() -> None:
    with pytest.raises(BackendError, match="not single tokens"):
        FakeLM().score_next(PROMPT, [" A", " two words"])
    with pytest.raises(BackendError, match="'Z'"):
        FakeLM(vocab=["A", "B"]).score_next(PROMPT, ["A", "Z"])


def test_score_next_batch_stacks_rows() -> None:
    lm = FakeLM()
    rows = lm.score_next_batch([PROMPT, "A. x\nB. y\nAnswer:"], [" A", " B"])
    assert rows.shape == (2, 2)
    np.testing.assert_array_equal(rows[0], lm.score_next(PROMPT, [" A", " B"]))
    assert lm.score_next_batch([], [" A"]).shape == (0, 1)


def test_loglikelihood_prefers_words_of_the_prompt_and_shorter() -> None:
    lm = FakeLM()
    ll = lm.loglikelihood(PROMPT, [" star trek", " pride", " unseen film", ""])
    assert ll.shape == (4,) and ll.dtype == np.float32
    assert ll[0] > ll[2] and ll[1] > ll[2]
    assert ll[3] == 0.0 and np.all(ll[:3] < 0)
    assert lm.loglikelihood(PROMPT, []).shape == (0,)


def test_generate_lists_candidates_by_preference() -> None:
    lm = FakeLM()
    (text,) = lm.generate([PROMPT])
    assert text.split(", ")[0] == "B"
    assert sorted(text.split(", ")) == ["A", "B", "C"]


def test_generate_deterministic_in_prompt_and_seed() -> None:
    lm = FakeLM()
    prompts = ["List tags for: space opera with rebels and an empire, lasers"] * 2
    first = lm.generate(prompts, temperature=1.0, seed=3)
    assert first[0] == first[1] == lm.generate(prompts[:1], temperature=1.0, seed=3)[0]
    seeds = {lm.generate(prompts[:1], temperature=5.0, seed=s)[0] for s in range(6)}
    assert len(seeds) > 1
    assert lm.generate(prompts[:1], stop=[","])[0].count(",") == 0
    assert lm.generate([]) == []


def test_stats_and_truncation_counted() -> None:
    lm = FakeLM(context_length=8)
    lm.encode(["one two", "a b c d e f g h i j"])
    lm.generate(["x y"])
    assert lm.stats.calls == 2
    assert lm.stats.truncated == 1
    assert lm.stats.prompt_tokens == 2 + 8 + 2
    assert lm.stats.generated_tokens > 0


def test_fail_after_and_fail_on() -> None:
    lm = FakeLM(fail_after=1)
    lm.encode(["ok"])
    with pytest.raises(BackendError, match="simulated"):
        lm.encode(["again"])
    with pytest.raises(BackendError, match="boom"):
        FakeLM(fail_on="boom").generate(["fine", "this goes boom"])


def test_bad_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        FakeLM(dimension=3)


def test_a_template_applied_only_in_generate_puts_the_answer_on_its_own_line() -> None:
    # servers, llama.cpp and the fake apply their chat template inside generate() only: the
    # scored text is then the documented plain text, "...instruction\nAnswer:"
    assert FakeLM(chat_template=True).apply_chat_template("Pick one.") == "Pick one.\n"
    assert FakeLM().apply_chat_template("Pick one.") == "Pick one."
