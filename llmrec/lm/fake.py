"""A deterministic, dependency-free language model for tests: milliseconds, not minutes.

:class:`FakeLM` behaves like a (very) small real model, so paradigm logic can be tested on it:

* ``encode`` sums hashed word vectors and normalises, so texts sharing words are closer;
* ``score_next`` reads labelled candidate lines in the prompt (``A. Toy Story`` / ``B) ...``)
  and prefers the candidate whose words overlap the rest of the prompt most;
* ``loglikelihood`` rewards continuation words that occur in the prompt, and costs more per word;
* ``generate`` answers a comma-separated list (candidate labels by preference when the prompt
  has labelled candidates, else words of the prompt), deterministic in ``(prompt, seed)``.

``fail_after`` and ``fail_on`` make it raise :class:`~llmrec.errors.BackendError` on purpose,
for fault-tolerance and cache-resume tests.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig, validated
from llmrec.errors import BackendError
from llmrec.lm.base import LanguageModel, Pooling

_WORD = re.compile(r"\w+|[^\w\s]")
_CANDIDATE_LINE = re.compile(r"^\s*[\[(]?(\w{1,4})[\])]?[.):]\s+(.+)$", re.MULTILINE)
#: log-probability mass the fake gives to tokens other than the labels (so scores are < 0)
_OTHER_LOGIT = 0.0


class FakeConfig(StrictConfig):
    """Settings of :class:`FakeLM`.

    Attributes:
        dim: encoding width.
        seed: changes every hashed quantity, like a different set of weights.
        vocab: the single tokens ``score_next`` accepts; ``None`` accepts any label that is one
            word (optionally after one leading space), like ``"A"`` or ``" A"``.
        context_length: inputs with more tokens (words and punctuation) are truncated.
        chat_template: what ``has_chat_template`` reports.
        fail_after: raise on every call after this many successful calls.
        fail_on: raise on any call whose input contains this substring.
    """

    dim: int = Field(default=16, ge=1)
    seed: int = 0
    vocab: list[str] | None = None
    context_length: int = Field(default=2048, ge=8)
    chat_template: bool = False
    fail_after: int | None = Field(default=None, ge=0)
    fail_on: str | None = None


def _hash_int(*parts: object) -> int:
    raw = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "little")


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"\w+", text)]


class FakeLM(LanguageModel):
    """Deterministic hash-based stand-in for a real model (see the module docstring).

    Example::

        lm = FakeLM(dim=8)
        lm.encode(["star wars", "star trek"]).shape        # (2, 8)
        lm.score_next("A. star trek\\nB. toy story\\nLiked: star wars\\nAnswer:", [" A", " B"])
    """

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.config = validated(FakeConfig, options, "invalid FakeLM options")
        self.model_id = f"fake-d{self.config.dim}-s{self.config.seed}"
        self._successes = 0

    # --- failure injection ---------------------------------------------------------------------
    def _begin(self, inputs: Sequence[str]) -> None:
        """Count what a call reads, raising first when a failure was asked for."""
        cfg = self.config
        if cfg.fail_after is not None and self._successes >= cfg.fail_after:
            raise BackendError(f"{self.model_id}: simulated failure after {cfg.fail_after} calls")
        if cfg.fail_on is not None and any(cfg.fail_on in text for text in inputs):
            raise BackendError(f"{self.model_id}: simulated failure on {cfg.fail_on!r}")
        self._successes += 1
        counts = self.count_tokens(inputs)
        self._count(
            prompt_tokens=sum(min(n, cfg.context_length) for n in counts),
            truncated=sum(n > cfg.context_length for n in counts),
        )

    # --- protocol ------------------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [max(1, len(_WORD.findall(t))) for t in texts]

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def has_chat_template(self) -> bool:
        return self.config.chat_template

    def _word_vector(self, word: str) -> np.ndarray:
        rng = np.random.default_rng(_hash_int("word", self.config.seed, word))
        return rng.standard_normal(self.config.dim)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors: the normalised sum of word vectors."""
        self._begin(texts)
        out = np.zeros((len(texts), self.config.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _words(text)[: self.config.context_length] or [f"<empty:{pooling}>"]
            vec = sum((self._word_vector(w) for w in words), np.zeros(self.config.dim))
            if pooling == "last":  # a different pooling gives a different (still sensible) vector
                vec = vec + self._word_vector(words[-1])
            out[row] = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return out

    def _check_labels(self, labels: Sequence[str]) -> None:
        vocab = self.config.vocab
        if vocab is not None:
            bad = [lab for lab in labels if lab not in vocab]
        else:
            bad = [lab for lab in labels if not re.fullmatch(r" ?[^\s]+", lab)]
        if bad:
            raise BackendError(f"labels {bad} are not single tokens for {self.model_id}")

    def _label_logits(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """Unnormalised preference of each label: candidate-line overlap plus a hashed jitter."""
        candidates = {m.group(1): m.group(2) for m in _CANDIDATE_LINE.finditer(prompt)}
        context = set(_words(_CANDIDATE_LINE.sub("", prompt)))
        logits = np.zeros(len(labels))
        for i, label in enumerate(labels):
            key = label.strip()
            if key in candidates:
                words = set(_words(candidates[key]))
                overlap = len(words & context) / max(1, len(words))
            else:
                overlap = 0.1 * _words(prompt).count(key.lower())
            jitter = _hash_int("label", self.config.seed, prompt, key) / 2**64
            logits[i] = 4.0 * overlap + 0.5 * jitter
        return logits

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """``(len(labels),)`` float32 log-probabilities (they sum to less than 1 in probability)."""
        self._check_labels(labels)
        self._begin([prompt])
        logits = self._label_logits(prompt, labels)
        if not len(labels):
            return np.zeros(0, dtype=np.float32)
        norm = np.logaddexp(np.logaddexp.reduce(logits), _OTHER_LOGIT)
        return (logits - norm).astype(np.float32)

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """``(len(continuations),)`` float32: per word log 0.5 if in the prompt, else ~log 0.02."""
        self._begin([prompt, *continuations])
        seen = set(_words(prompt))
        out = np.zeros(len(continuations), dtype=np.float32)
        for i, cont in enumerate(continuations):
            total = 0.0
            for word in _words(cont):
                jitter = _hash_int("ll", self.config.seed, prompt, word) / 2**64
                total += np.log(0.5) if word in seen else np.log(0.01 + 0.02 * jitter)
            out[i] = total
        return out

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """Comma-separated candidate labels (best first) or prompt words; see the module doc."""
        self._begin(prompts)
        answers, generated = [], 0
        for prompt in prompts:
            items = self._answer_items(prompt, temperature, seed)
            text = ", ".join(items[: max(1, max_new_tokens // 2)])
            generated += self.count_tokens([text])[0]
            for s in stop:
                pos = text.find(s) if s else -1
                text = text[:pos] if pos >= 0 else text
            answers.append(text)
        self._count(generated_tokens=generated)
        return answers

    def _answer_items(self, prompt: str, temperature: float, seed: int) -> list[str]:
        labels = list(dict.fromkeys(m.group(1) for m in _CANDIDATE_LINE.finditer(prompt)))
        if labels:
            keys = self._label_logits(prompt, labels)
        else:
            labels = list(dict.fromkeys(w for w in _words(prompt) if len(w) > 3))[-32:]
            keys = np.array([_hash_int("gen", self.config.seed, w) / 2**64 for w in labels])
        if temperature > 0:  # Gumbel noise: a seeded sample, deterministic in (prompt, seed)
            rng = np.random.default_rng(_hash_int("sample", self.config.seed, seed, prompt))
            keys = keys + temperature * rng.gumbel(size=len(keys))
        order = np.argsort(-keys, kind="stable")
        return [labels[i] for i in order]
