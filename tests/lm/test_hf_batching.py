"""The transformers backend batched across prompts, on a tiny random-weight Llama built here:
the batched verbs give the one-prompt scores, in fewer forwards, with sizes fit to the device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec import runtime
from llmrec.errors import BackendError
from llmrec.lm.hf import HFCausalLM

PROMPTS = [
    f"The user watched {'Toy Story, Heat and Casino, ' * (i + 1)}. Which item will the user "
    "choose next?"
    for i in range(5)
]
CONTS = [[' "Movie 12"', ' "The Matrix"', ' "Jumanji"', " x"] for _ in PROMPTS]
CONTS[2] = [' "Movie 3"']  # prompts need not have as many continuations as each other


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir: Path) -> HFCausalLM:
    return HFCausalLM(tiny_llama_dir)


def _forwards(lm: HFCausalLM) -> list[int]:
    """Batch size of every forward of ``lm.model`` from now on."""
    seen: list[int] = []
    lm.model.register_forward_hook(lambda _m, _a, kw, _out: seen.append(kw["input_ids"].shape[0]),
                                   with_kwargs=True)  # fmt: skip
    return seen


def test_loglikelihood_batch_equals_one_prompt_at_a_time(tiny: HFCausalLM) -> None:
    one = [tiny.loglikelihood(p, c) for p, c in zip(PROMPTS, CONTS, strict=True)]
    full = [tiny.loglikelihood_full(p, c) for p, c in zip(PROMPTS, CONTS, strict=True)]
    calls = tiny.stats.calls
    batched = tiny.loglikelihood_batch(PROMPTS, CONTS)
    assert tiny.stats.calls == calls + 1  # one call however many prompts
    assert [b.shape for b in batched] == [(4,), (4,), (1,), (4,), (4,)]
    for b, o, f in zip(batched, one, full, strict=True):
        np.testing.assert_allclose(b, o, atol=1e-5)
        np.testing.assert_allclose(b, f, atol=1e-4)
    assert np.ptp(np.concatenate(batched)) > 1.0  # real, distinct scores


def test_prompts_share_one_prefix_forward(tiny_llama_dir: Path) -> None:
    lm = HFCausalLM(tiny_llama_dir)
    seen = _forwards(lm)
    lm.loglikelihood_batch(PROMPTS, CONTS)
    # one forward of the five prompts, then all 17 continuations on copies of their KV caches
    assert seen == [len(PROMPTS), sum(len(c) for c in CONTS)]
    seen.clear()
    for p, c in zip(PROMPTS, CONTS, strict=True):
        lm.loglikelihood(p, c)
    assert seen == [1, 4, 1, 4, 1, 1, 1, 4, 1, 4]  # one prompt at a time: two forwards each


def test_small_budgets_bucket_without_changing_scores(tiny_llama_dir: Path) -> None:
    lm = HFCausalLM(tiny_llama_dir, batch_size=2, max_batch_tokens=64)
    seen = _forwards(lm)
    got = lm.loglikelihood_batch(PROMPTS, CONTS)
    ref = HFCausalLM(tiny_llama_dir).loglikelihood_batch(PROMPTS, CONTS)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-5)
    assert max(seen) <= max(2, max(len(c) for c in CONTS))


def test_without_prefix_cache_every_row_is_a_full_sequence(tiny_llama_dir: Path) -> None:
    lm = HFCausalLM(tiny_llama_dir, prefix_cache=False)
    got = lm.loglikelihood_batch(PROMPTS[:2], CONTS[:2])
    ref = [lm.loglikelihood_full(p, c) for p, c in zip(PROMPTS[:2], CONTS[:2], strict=True)]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-6)


def test_mismatched_and_empty_inputs(tiny: HFCausalLM) -> None:
    with pytest.raises(BackendError, match="2 prompt"):
        tiny.loglikelihood_batch(PROMPTS[:2], CONTS[:1])
    assert tiny.loglikelihood_batch([], []) == []
    got = tiny.loglikelihood_batch(PROMPTS[:2], [[], CONTS[1]])
    assert got[0].shape == (0,) and got[1].shape == (4,)


def test_auto_sizes_are_todays_on_the_cpu(tiny: HFCausalLM) -> None:
    assert (tiny.batch_size, tiny.max_batch_tokens) == (8, 4096)
    assert HFCausalLM(tiny.config.path, batch_size=3).batch_size == 3


def test_auto_sizes_on_a_pretend_gpu(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    lm = HFCausalLM(tiny_llama_dir)
    lm._device = torch.device("cuda")  # never used for compute here: only sizes are resolved
    monkeypatch.setattr(runtime, "_free_memory", lambda device: 64 * 2**30)
    lm._resolve_batches()
    # 64 wide, 2 layers, float32: 4 x 64 x (2 x 2 + 16) = 5,120 bytes a token; half of 64 GiB
    assert lm.batch_size == 128
    assert lm.max_batch_tokens == runtime.GPU_MAX_BATCH_TOKENS  # 6.7M tokens fit: capped
    monkeypatch.setattr(runtime, "_free_memory", lambda device: 2**30)
    lm._resolve_batches()
    assert lm.max_batch_tokens == (2**29) // 5120


def test_one_row_per_forward_still_reads_each_prompts_own_cache(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmrec.lm import hf_scoring

    ref = HFCausalLM(tiny_llama_dir).loglikelihood_batch(PROMPTS, CONTS)
    monkeypatch.setattr(hf_scoring, "_MAX_LOGIT_ELEMENTS", 1)  # the logits cap: a row a forward
    lm = HFCausalLM(tiny_llama_dir)
    seen = _forwards(lm)
    got = lm.loglikelihood_batch(PROMPTS, CONTS)
    assert seen[0] == len(PROMPTS) and seen[1:] == [1] * sum(len(c) for c in CONTS)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-5)
