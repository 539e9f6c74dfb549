"""Conformance checks every :class:`~llmrec.lm.base.LanguageModel` backend must pass.

A backend's test subclasses :class:`LMConformance`, provides an ``lm`` fixture and says which
verbs it answers and how close batched answers must be to one-at-a-time answers::

    import pytest
    from llmrec.testing import LMConformance

    class TestMyBackend(LMConformance):
        verbs = frozenset({"encode"})   # the others must raise BackendError
        atol = 1e-5                     # batched vs alone, per backend

        @pytest.fixture
        def lm(self):
            return MyBackend(...)

The checks, on tiny inputs (a real model answers them in seconds): shapes and dtypes of every
verb, empty inputs, finite answers (log-probabilities <= 0, unit vectors), batching invariance
(a batch equals each input alone, within ``atol``), usage counting (one verb call adds exactly
one to ``stats.calls`` and counts what it read), unsupported verbs raising
:class:`~llmrec.errors.BackendError`, and cache transparency (:class:`~llmrec.lm.cache.CachedLM`
answers as the bare backend, and asking again reaches the backend no more).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from llmrec.errors import BackendError
from llmrec.lm.base import MAX_LOGPROB, LanguageModel
from llmrec.lm.cache import CachedLM

__all__ = ["ALL_VERBS", "LMConformance"]

#: the protocol's verbs, as :attr:`LMConformance.verbs` names them
ALL_VERBS = frozenset({"encode", "generate", "score_next", "loglikelihood"})

TEXTS = ("Toy Story (1995). Animation", "Heat (1995). Action", "Casino (1995). Drama")
PROMPTS = (
    "Liked: Star Wars\nA. Star Trek\nB. Toy Story\nAnswer:",
    "Liked: Heat\nA. Casino\nB. Babe\nAnswer:",
    "Pick one.\nA. yes\nB. no\nAnswer:",
)
LABELS = (" A", " B")
CONTEXT = "My favourite film is"
CONTINUATIONS = (" Star Wars", " Toy Story", " Heat")


def _calls(lm: LanguageModel, verb: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """``verb()`` and how much each usage counter moved."""
    before = lm.stats.as_dict()
    out = verb()
    after = lm.stats.as_dict()
    return out, {k: after[k] - before.get(k, 0.0) for k in after}


class LMConformance:
    """Checks shared by every LM backend. Subclasses provide an ``lm`` fixture."""

    #: the verbs the backend answers; each other verb must raise BackendError
    verbs: ClassVar[frozenset[str]] = ALL_VERBS
    #: largest difference allowed between a batched answer and the same input alone
    atol: ClassVar[float] = 1e-5
    #: whether greedy ``generate`` on a batch equals each prompt alone (left padding can
    #: flip a near-tie in a real model's greedy choice)
    generate_batch_invariant: ClassVar[bool] = True
    #: whether ``encode`` counts the tokens it read (an HTTP server may not report them)
    encode_counts_tokens: ClassVar[bool] = True
    #: prompts for ``score_next`` and ``generate``, each ending where ``labels`` are one token
    prompts: ClassVar[tuple[str, ...]] = PROMPTS
    #: tokens ``generate`` may write per answer (kept tiny: real models are slow)
    max_new_tokens: ClassVar[int] = 4

    @pytest.fixture
    def lm(self) -> LanguageModel:
        raise NotImplementedError("an LMConformance subclass provides an `lm` fixture")

    def _supports(self, verb: str) -> None:
        if verb not in self.verbs:
            pytest.skip(f"this backend does not {verb}")

    # --- shapes, dtypes, finiteness ----------------------------------------------------------
    def test_encode_gives_finite_unit_float32_rows(self, lm: LanguageModel) -> None:
        self._supports("encode")
        vecs = lm.encode(list(TEXTS))
        assert vecs.dtype == np.float32 and vecs.ndim == 2
        assert vecs.shape[0] == len(TEXTS) and vecs.shape[1] > 0
        assert np.isfinite(vecs).all()
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
        assert lm.encode([]).shape[0] == 0

    def test_score_next_gives_finite_log_probabilities(self, lm: LanguageModel) -> None:
        self._supports("score_next")
        one = lm.score_next(self.prompts[0], list(LABELS))
        assert one.shape == (len(LABELS),) and one.dtype == np.float32
        assert np.isfinite(one).all() and (one <= MAX_LOGPROB).all()
        batch = lm.score_next_batch(list(self.prompts), list(LABELS))
        assert batch.shape == (len(self.prompts), len(LABELS)) and batch.dtype == np.float32
        assert np.isfinite(batch).all() and (batch <= MAX_LOGPROB).all()
        assert lm.score_next_batch([], list(LABELS)).shape == (0, len(LABELS))

    def test_loglikelihood_gives_finite_log_probabilities(self, lm: LanguageModel) -> None:
        self._supports("loglikelihood")
        scores = lm.loglikelihood(CONTEXT, list(CONTINUATIONS))
        assert scores.shape == (len(CONTINUATIONS),) and scores.dtype == np.float32
        assert np.isfinite(scores).all() and (scores <= MAX_LOGPROB).all()
        assert lm.loglikelihood(CONTEXT, []).shape == (0,)

    def test_generate_gives_one_text_per_prompt(self, lm: LanguageModel) -> None:
        self._supports("generate")
        answers = lm.generate(list(self.prompts), max_new_tokens=self.max_new_tokens)
        assert len(answers) == len(self.prompts) and all(isinstance(a, str) for a in answers)
        assert lm.generate([], max_new_tokens=self.max_new_tokens) == []

    # --- batching invariance -----------------------------------------------------------------
    def test_encode_batch_equals_each_text_alone(self, lm: LanguageModel) -> None:
        self._supports("encode")
        alone = np.concatenate([lm.encode([t]) for t in TEXTS])
        np.testing.assert_allclose(lm.encode(list(TEXTS)), alone, atol=self.atol)

    def test_score_next_batch_equals_each_prompt_alone(self, lm: LanguageModel) -> None:
        self._supports("score_next")
        alone = np.stack([lm.score_next(p, list(LABELS)) for p in self.prompts])
        batch = lm.score_next_batch(list(self.prompts), list(LABELS))
        np.testing.assert_allclose(batch, alone, atol=self.atol)

    def test_loglikelihood_batch_equals_each_continuation_alone(self, lm: LanguageModel) -> None:
        self._supports("loglikelihood")
        alone = np.concatenate([lm.loglikelihood(CONTEXT, [c]) for c in CONTINUATIONS])
        batch = lm.loglikelihood(CONTEXT, list(CONTINUATIONS))
        np.testing.assert_allclose(batch, alone, atol=self.atol)

    def test_loglikelihood_across_prompts_equals_each_prompt_alone(self, lm: LanguageModel) -> None:
        self._supports("loglikelihood")
        prompts = [CONTEXT, *self.prompts]
        conts = [list(CONTINUATIONS[: 1 + i % len(CONTINUATIONS)]) for i in range(len(prompts))]
        batch = lm.loglikelihood_batch(prompts, conts)
        assert len(batch) == len(prompts) and lm.loglikelihood_batch([], []) == []
        for got, p, c in zip(batch, prompts, conts, strict=True):
            assert got.shape == (len(c),) and got.dtype == np.float32
            np.testing.assert_allclose(got, lm.loglikelihood(p, c), atol=self.atol)

    def test_greedy_generate_batch_equals_each_prompt_alone(self, lm: LanguageModel) -> None:
        self._supports("generate")
        if not self.generate_batch_invariant:
            pytest.skip("this backend's batched greedy decoding may differ (left padding)")
        n = self.max_new_tokens
        alone = [lm.generate([p], max_new_tokens=n)[0] for p in self.prompts]
        assert lm.generate(list(self.prompts), max_new_tokens=n) == alone

    # --- usage counting ----------------------------------------------------------------------
    def test_each_verb_call_counts_once(self, lm: LanguageModel) -> None:
        calls: dict[str, Callable[[], Any]] = {
            "encode": lambda: lm.encode(list(TEXTS)),
            "score_next": lambda: lm.score_next_batch(list(self.prompts), list(LABELS)),
            "loglikelihood": lambda: lm.loglikelihood(CONTEXT, list(CONTINUATIONS)),
            "generate": lambda: lm.generate(list(self.prompts), max_new_tokens=self.max_new_tokens),
        }
        for verb in sorted(self.verbs):
            out, moved = _calls(lm, calls[verb])
            assert moved["calls"] == 1, (verb, moved)
            assert moved["cache_hits"] == 0, (verb, moved)
            if verb != "encode" or self.encode_counts_tokens:
                assert moved["prompt_tokens"] > 0, (verb, moved)
            if verb == "generate" and any(out):
                assert moved["generated_tokens"] > 0, (verb, moved)
            else:
                assert moved["generated_tokens"] == 0, (verb, moved)
        if "score_next" in self.verbs:  # answered through score_next_batch: still one call
            _, moved = _calls(lm, lambda: lm.score_next(self.prompts[0], list(LABELS)))
            assert moved["calls"] == 1, moved

    def test_unsupported_verbs_raise_backend_error(self, lm: LanguageModel) -> None:
        attempts: dict[str, Callable[[], Any]] = {
            "encode": lambda: lm.encode(list(TEXTS)),
            "score_next": lambda: lm.score_next(self.prompts[0], list(LABELS)),
            "loglikelihood": lambda: lm.loglikelihood(CONTEXT, list(CONTINUATIONS)),
            "generate": lambda: lm.generate([self.prompts[0]], max_new_tokens=self.max_new_tokens),
        }
        missing = sorted(ALL_VERBS - self.verbs)
        if not missing:
            pytest.skip("this backend answers every verb")
        for verb in missing:
            with pytest.raises(BackendError):
                attempts[verb]()

    # --- cache transparency ------------------------------------------------------------------
    def test_cache_answers_as_the_backend_and_asks_once(
        self, lm: LanguageModel, tmp_path: Path
    ) -> None:
        cached = CachedLM(lm, tmp_path)
        asks: dict[str, Callable[[LanguageModel], Any]] = {
            "encode": lambda m: m.encode(list(TEXTS)),
            "score_next": lambda m: m.score_next_batch(list(self.prompts), list(LABELS)),
            "loglikelihood": lambda m: m.loglikelihood(CONTEXT, list(CONTINUATIONS)),
            "generate": lambda m: m.generate(
                list(self.prompts), max_new_tokens=self.max_new_tokens
            ),
        }
        # not closed: CachedLM.close closes the backend too, which other tests share
        for verb in sorted(self.verbs):
            bare = asks[verb](lm)
            ask = functools.partial(asks[verb], cached)
            first, moved = _calls(lm, ask)
            assert moved["calls"] >= 1, (verb, moved)
            again, moved = _calls(lm, ask)
            assert moved["calls"] == 0 and moved["cache_hits"] > 0, (verb, moved)
            if verb == "generate":
                assert first == again
                if self.generate_batch_invariant:
                    assert first == bare
            else:
                np.testing.assert_allclose(first, bare, atol=self.atol)
                np.testing.assert_array_equal(again, first)
