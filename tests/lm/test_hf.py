"""The transformers backend on the two offline causal models (slow: loads real models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrec.errors import BackendError
from llmrec.lm.hf import HFCausalLM, _length_buckets

pytestmark = pytest.mark.slow

PROMPT = (
    "The user watched: The Matrix, Alien, Blade Runner, Terminator 2.\n"
    "Which movie should they watch next?\n"
    "A. Star Wars\nB. Toy Story\nC. Sense and Sensibility\nD. Aliens\n"
    "Answer:"
)
LABELS = [" A", " B", " C", " D"]
CONTINUATIONS = [" Star Wars", " Toy Story (1995)", " Aliens", "\n\nB", " C", " Sense and"]


@pytest.fixture(params=["smollm", "gemma"])
def lm(request: pytest.FixtureRequest) -> HFCausalLM:
    model = request.getfixturevalue(request.param)
    assert isinstance(model, HFCausalLM)
    return model


def _reference_logprobs(lm: HFCausalLM, prompt: str) -> torch.Tensor:
    """Full-vocabulary next-token log-probs computed directly from the model (no batching)."""
    ids = torch.tensor([lm.tokenizer(prompt)["input_ids"]])
    with torch.inference_mode():
        logits = lm.model(ids).logits[0, -1].float()
    return torch.log_softmax(logits, dim=-1)


def test_score_next_is_a_log_probability_over_the_vocabulary(lm: HFCausalLM) -> None:
    scores = lm.score_next(PROMPT, LABELS)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert np.all(scores <= 0) and np.logaddexp.reduce(scores) <= 1e-6
    ref = _reference_logprobs(lm, PROMPT)
    assert abs(float(torch.logsumexp(ref, 0))) < 1e-4
    ids = lm.label_token_ids(PROMPT, LABELS)
    assert len(set(ids)) == 4
    np.testing.assert_allclose(scores, ref[ids].numpy(), atol=1e-4)


def test_multi_token_labels_are_named(lm: HFCausalLM) -> None:
    with pytest.raises(BackendError, match="Sense and Sensibility"):
        lm.score_next(PROMPT, [" A", " Sense and Sensibility"])


def test_batched_scores_equal_unbatched_with_left_padding(lm: HFCausalLM) -> None:
    prompts = [PROMPT, "Pick one.\nA. yes\nB. no\nAnswer:", PROMPT.replace("Alien,", "")]
    batched = lm.score_next_batch(prompts, [" A", " B"])
    single = np.stack([lm.score_next(p, [" A", " B"]) for p in prompts])
    np.testing.assert_allclose(batched, single, atol=2e-3)
    assert lm.score_next_batch([], [" A"]).shape == (0, 1)


def test_loglikelihood_kv_reuse_matches_full_sequences(lm: HFCausalLM) -> None:
    shared = lm.loglikelihood(PROMPT, CONTINUATIONS)
    full = lm.loglikelihood_full(PROMPT, CONTINUATIONS)
    assert shared.shape == (len(CONTINUATIONS),)
    assert np.all(shared < 0)
    np.testing.assert_allclose(shared, full, atol=1e-3)
    assert lm.loglikelihood(PROMPT, [""])[0] == 0.0
    assert lm.loglikelihood(PROMPT, []).shape == (0,)


def test_loglikelihood_boundary_merge_falls_back(smollm: HFCausalLM) -> None:
    # "Answer: " + "A" merges the trailing space into " A": the prompt tokens are no prefix
    prompt = "Answer: "
    assert smollm._ids(prompt + "A")[: len(smollm._ids(prompt))] != smollm._ids(prompt)
    scores = smollm.loglikelihood(prompt, ["A", "B"])
    np.testing.assert_allclose(scores, smollm.loglikelihood_full(prompt, ["A", "B"]), atol=1e-4)


def test_generate_is_deterministic(lm: HFCausalLM) -> None:
    prompts = [PROMPT, "Three fruits:"]
    first = lm.generate(prompts, max_new_tokens=8)
    assert first == lm.generate(prompts, max_new_tokens=8)
    assert first[1] == lm.generate(prompts[1:], max_new_tokens=8)[0]  # batch-independent
    sampled = lm.generate(prompts[:1], max_new_tokens=8, temperature=0.9, seed=5)
    assert sampled == lm.generate(prompts[:1], max_new_tokens=8, temperature=0.9, seed=5)
    assert all(isinstance(t, str) for t in first)
    assert lm.generate([]) == []


def test_chat_templates(smollm: HFCausalLM, gemma: HFCausalLM) -> None:
    assert smollm.has_chat_template
    assert "<|im_start|>" in smollm.apply_chat_template("hi")
    assert not gemma.has_chat_template  # a base model: prompts stay plain text
    assert gemma.apply_chat_template("hi") == "hi"


def test_encode_batches_match_single_texts(lm: HFCausalLM) -> None:
    texts = ["Star Wars (1977)", "Toy Story (1995) Animation|Children's|Comedy", "Heat"]
    vecs = lm.encode(texts)
    assert vecs.shape == (3, lm.model.config.hidden_size) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    single = np.concatenate([lm.encode([t]) for t in texts])
    np.testing.assert_allclose(vecs, single, atol=2e-3)
    last = lm.encode(texts, pooling="last")
    assert not np.allclose(last, vecs)


def test_truncation_keeps_the_end_and_is_counted(smollm: HFCausalLM) -> None:
    before = smollm.stats.truncated
    long_prompt = "filler words " * 40 + PROMPT
    smollm.config.max_length = 48
    try:
        cut = smollm.score_next(long_prompt, LABELS)
    finally:
        smollm.config.max_length = None
    assert smollm.stats.truncated == before + 1
    assert np.all(np.isfinite(cut))
    assert smollm.count_tokens([long_prompt])[0] > 48


def test_stats_count_tokens(smollm: HFCausalLM) -> None:
    before = smollm.stats.prompt_tokens
    smollm.score_next(PROMPT, LABELS)
    assert smollm.stats.prompt_tokens - before == smollm.count_tokens([PROMPT])[0]
    assert smollm.context_length >= 2048


def test_length_buckets_respect_limits() -> None:
    lengths = [5, 50, 7, 49, 6, 100]
    batches = list(_length_buckets(lengths, batch_size=2, max_batch_tokens=100))
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        assert len(batch) <= 2 and max(lengths[i] for i in batch) * len(batch) <= 100
