"""LlamaCppLM on the real SmolLM2 GGUF: the protocol's verbs, checked against references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmrec.errors import BackendError, ConfigError

pytestmark = pytest.mark.slow

PROMPT = (
    "Which of these is a fruit?\nA) a car\nB) an apple\nC) a chair\nD) a river\n"
    "Answer with one letter. Answer:"
)
LABELS = [" A", " B", " C", " D"]


def test_score_next_is_a_log_distribution_over_labels(llama_lm: Any) -> None:
    scores = llama_lm.score_next(PROMPT, LABELS)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert np.all(np.isfinite(scores)) and np.all(scores < 0)
    assert np.exp(scores).sum() <= 1.0 + 1e-5
    assert len(set(scores.tolist())) == 4  # the labels are different tokens


def test_score_next_batch_matches_one_by_one(llama_lm: Any) -> None:
    prompts = [PROMPT, "Pick a letter. Answer:", PROMPT]
    batch = llama_lm.score_next_batch(prompts, LABELS)
    assert batch.shape == (3, 4)
    for row, prompt in enumerate(prompts):
        np.testing.assert_allclose(batch[row], llama_lm.score_next(prompt, LABELS), atol=1e-4)
    assert llama_lm.score_next_batch([], LABELS).shape == (0, 4)


def test_multi_token_label_is_named(llama_lm: Any) -> None:
    with pytest.raises(BackendError, match="a strawberry"):
        llama_lm.score_next(PROMPT, [" A", " a strawberry"])


def test_loglikelihood_matches_full_sequence_scoring(llama_lm: Any, smollm2_gguf: Path) -> None:
    from llmrec.lm.llamacpp import LlamaCppLM

    prompt = "A user who liked Toy Story and Aladdin will next watch"
    conts = [" The Lion King", " Schindler's List", " Heat", " a", "", " Toy Story 2 (1999)"]
    cached = llama_lm.loglikelihood(prompt, conts)
    with LlamaCppLM(smollm2_gguf, prefix_cache=False) as reference:
        full = reference.loglikelihood(prompt, conts)
    assert cached.shape == (6,) and cached.dtype == np.float32
    np.testing.assert_allclose(cached, full, atol=2e-3)
    assert cached[4] == 0.0  # an empty continuation has probability one
    assert np.all(cached[[0, 1, 2, 3, 5]] < 0)
    # longer continuations of the same kind cost more than their one-token start
    assert cached[5] < llama_lm.loglikelihood(prompt, [" Toy"])[0]


def test_loglikelihood_after_scoring_other_prompts_is_unchanged(llama_lm: Any) -> None:
    prompt, conts = "The capital of France is", [" Paris", " Rome"]
    first = llama_lm.loglikelihood(prompt, conts)
    llama_lm.score_next(PROMPT, LABELS)  # moves the KV cache elsewhere
    np.testing.assert_allclose(llama_lm.loglikelihood(prompt, conts), first, atol=1e-4)
    assert first[0] > first[1]


def test_generate_is_greedy_deterministic_and_cut_at_stop(llama_lm: Any) -> None:
    assert llama_lm.has_chat_template
    first = llama_lm.generate(["Name one fruit."], max_new_tokens=16)
    assert first == llama_lm.generate(["Name one fruit."], max_new_tokens=16)
    assert isinstance(first[0], str) and first[0].strip()
    word = first[0].split()[-1]
    cut = llama_lm.generate(["Name one fruit."], max_new_tokens=16, stop=[word])
    assert word not in cut[0] and first[0].startswith(cut[0])


def test_long_prompt_is_truncated_and_counted(smollm2_gguf: Path) -> None:
    from llmrec.lm.llamacpp import LlamaCppLM

    with LlamaCppLM(smollm2_gguf, n_ctx=64) as lm:
        long_prompt = "movie " * 200 + "Answer:"
        assert lm.count_tokens([long_prompt])[0] > 64
        scores = lm.score_next(long_prompt, LABELS)
        assert np.all(np.isfinite(scores))
        assert lm.stats.truncated == 1
        lm.generate([long_prompt], max_new_tokens=4)
        assert lm.stats.truncated == 2
        assert lm.context_length == 64


def test_encode_pools_token_vectors(smollm2_gguf: Path, llama_lm: Any) -> None:
    from llmrec.lm.llamacpp import LlamaCppLM

    with pytest.raises(BackendError, match="embedding=True"):
        llama_lm.encode(["x"])
    with LlamaCppLM(smollm2_gguf, embedding=True) as lm:
        texts = ["Toy Story (1995) animation comedy", "Heat (1995) crime thriller", "x"]
        mean = lm.encode(texts)
        last = lm.encode(texts, pooling="last")
        assert mean.shape == (3, 576) and mean.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(mean, axis=1), 1.0, atol=1e-5)
        assert not np.allclose(mean, last)
        # a one-token text pools to the same vector either way
        np.testing.assert_allclose(mean[2], last[2], atol=1e-5)
        np.testing.assert_allclose(lm.encode(texts[:1]), mean[:1], atol=1e-5)
        with pytest.raises(ConfigError):
            lm.encode(texts, pooling="cls")


def test_missing_file_and_bad_options_are_config_errors(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (llamacpp extra)")
    from llmrec.lm.llamacpp import LlamaCppLM

    with pytest.raises(ConfigError, match="not found"):
        LlamaCppLM(tmp_path / "none.gguf")
    with pytest.raises(ConfigError):
        LlamaCppLM(tmp_path / "none.gguf", n_threads=0)
