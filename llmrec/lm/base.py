"""The one protocol through which every paradigm talks to a language model.

Four batched verbs cover the three paradigms:

* :meth:`LanguageModel.encode` — texts to vectors (embeddings paradigm, semantic IDs);
* :meth:`LanguageModel.generate` — prompts to text (tags, generated rankings);
* :meth:`LanguageModel.score_next` — log-probabilities of single-token labels after a prompt
  (the verbaliser ranker);
* :meth:`LanguageModel.loglikelihood` — summed log-probabilities of continuations after one
  shared prompt (the likelihood ranker).

A backend that cannot do a verb (an encoder-only model cannot generate) raises
:class:`~llmrec.errors.BackendError` saying so. Backends are deterministic given their seed.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from llmrec.errors import BackendError

Pooling = Literal["mean", "last", "cls"]


@dataclass
class LMStats:
    """Counters a backend keeps so that evaluations can report LM cost.

    Attributes:
        calls: number of protocol calls.
        prompt_tokens: tokens read (prompts, texts to encode).
        generated_tokens: tokens written by ``generate``.
        truncated: inputs cut to fit the context window.
        cache_hits: answers served from the disk cache.
    """

    calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    truncated: int = 0
    cache_hits: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "truncated": self.truncated,
            "cache_hits": self.cache_hits,
            **self.extra,
        }


def single_token_ids(
    tokenize: Callable[[str], list[int]],
    prompt: str,
    labels: Sequence[str],
    model_id: str,
    *,
    tail_chars: int = 64,
) -> list[int]:
    """Token id of each label as it tokenises right after ``prompt``.

    ``tokenize`` maps text to ids without special tokens. Tokenisation boundaries are local, so
    the prompt's last ``tail_chars`` characters decide them. Raises
    :class:`~llmrec.errors.BackendError` naming every label that is not exactly one token there.
    """
    tail = prompt[-tail_chars:]
    base = tokenize(tail)
    ids: list[int] = []
    bad: list[str] = []
    for label in labels:
        joint = tokenize(tail + label)
        if len(joint) == len(base) + 1 and joint[: len(base)] == base:
            ids.append(joint[-1])
        else:
            bad.append(label)
    if bad:
        raise BackendError(
            f"labels {bad} are not single tokens after this prompt for {model_id}; "
            "use one-token labels (e.g. ' A' after a prompt ending in ':')"
        )
    return ids


class LanguageModel(ABC):
    """Base class of LM backends. Subclasses implement the verbs they support."""

    #: a stable identifier of the model and its weights, used as a cache key
    model_id: str = "unknown"

    def __init__(self) -> None:
        self.stats = LMStats()

    # --- the protocol ------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32 vectors, one per text. Empty input gives ``(0, dim)``."""
        raise BackendError(f"{self.model_id} cannot encode")

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """One completion per prompt. Chat templates are applied where the model has one.

        ``temperature=0`` is greedy decoding; text from the first stop string on is removed.
        """
        raise BackendError(f"{self.model_id} cannot generate")

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """``(len(labels),)`` float32 log-probabilities of each label as the next token.

        Each label must be a single token of the model's vocabulary (as it appears after the
        prompt); otherwise :class:`~llmrec.errors.BackendError` names the offending labels.
        """
        raise BackendError(f"{self.model_id} cannot score next tokens")

    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(labels))`` float32; backends override to batch the forward."""
        if not prompts:
            return np.zeros((0, len(labels)), dtype=np.float32)
        return np.stack([self.score_next(p, labels) for p in prompts])

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """``(len(continuations),)`` float32 summed log-probabilities of each continuation
        given the shared ``prompt``. Backends reuse the prompt's KV cache where they can."""
        raise BackendError(f"{self.model_id} cannot score log-likelihoods")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text (used to fit prompts into a token budget)."""
        return [max(1, len(t) // 4) for t in texts]

    @property
    def context_length(self) -> int:
        """Maximum tokens the model reads at once."""
        return 2048

    @property
    def has_chat_template(self) -> bool:
        return False

    def apply_chat_template(self, prompt: str) -> str:
        """``prompt`` as one user turn plus the assistant prefix, in the model's chat format.

        ``score_next`` and ``loglikelihood`` read their prompt as plain text; callers that want
        a chat model to see its own format wrap the prompt with this first. Models without a
        template (and servers, which apply theirs on the chat endpoint) return it unchanged.
        """
        return prompt

    def close(self) -> None:
        """Release resources (servers, threads). Safe to call twice."""

    def __enter__(self) -> LanguageModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
