"""The LM conformance kit on the real SmolLM2 GGUF: in-process through llama.cpp, and through
the OpenAI-compatible client against a real llama.cpp server (slow)."""

from __future__ import annotations

from typing import Any

import pytest

from llmrec.lm.base import LanguageModel
from llmrec.testing import LMConformance

pytestmark = pytest.mark.slow


class TestLlamaCpp(LMConformance):
    # loaded without embedding=True, so encode must refuse with a BackendError
    verbs = frozenset({"generate", "score_next", "loglikelihood"})
    atol = 1e-3  # a prompt decoded on a reused KV prefix vs from scratch: float32 rounding

    @pytest.fixture
    def lm(self, llama_lm: Any) -> LanguageModel:
        lm: LanguageModel = llama_lm
        return lm


@pytest.mark.server
class TestOpenAIAgainstLlamaCppServer(LMConformance):
    # the llama.cpp server's echoed prompt log-probs fail the probe: loglikelihood refuses
    verbs = frozenset({"encode", "generate", "score_next"})
    atol = 1e-4  # one request per prompt either way
    encode_counts_tokens = False  # /embeddings answers carry no usage the client reads
    # prompts whose greedy next token is not end-of-text: llama-cpp-python's server answers
    # an empty top_logprobs list when it is, which score_next reports as a BackendError
    prompts = tuple(
        f"Which of these is a fruit?\nA) {a}\nB) {b}\nC) a chair\nD) a river\n"
        "Answer with one letter. Answer:"
        for a, b in (("a car", "an apple"), ("an apple", "a car"), ("a pear", "a car"))
    )

    @pytest.fixture
    def lm(self, server_lm: Any) -> LanguageModel:
        lm: LanguageModel = server_lm
        return lm
