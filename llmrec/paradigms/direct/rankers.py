"""LM rankers: score each user's candidate items with a language model.

Three methods, one interface (:meth:`Ranker.rank`, ``(n, c)`` candidates in, ``(n, c)``
float32 scores out, higher is better):

* :class:`VerbaliserRanker` — one forward pass per prompt; the next-token log-probabilities of
  the candidates' index labels are the scores (LlamaRec).
* :class:`LikelihoodRanker` — each candidate's quoted title is scored by its log-likelihood
  after the shared prompt (the backend reuses the prompt's KV cache), divided by its length.
* :class:`GenerationRanker` — the LM writes a ranked list; it is parsed and grounded to the
  candidates (:mod:`~llmrec.paradigms.direct.grounding`); candidates it did not rank keep the
  order they were given in (a retriever's order), after the ranked ones.

A ranker is fitted on the training data (item texts, user attributes, few-shot examples) and
is then usable as the second stage of :class:`~llmrec.paradigms.direct.two_stage.TwoStage` or
directly in the candidate protocol via :meth:`Ranker.score_candidates`. All three send a
batch of users to the LM in one call (``batch_size``, sized from the device). Each keeps
:class:`RankerStats` (LM calls, tokens, wall time per call, parse failures) for reports.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np

from llmrec import progress
from llmrec.config import validated
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.engine import engine_of
from llmrec.errors import ConfigError, NotFittedError
from llmrec.lm.base import LanguageModel
from llmrec.models.query import QueryProfiles
from llmrec.paradigms.direct.grounding import Grounder
from llmrec.paradigms.direct.prompts import (
    LABELS,
    Prompt,
    PromptBuilder,
    user_profiles,
)
from llmrec.paradigms.direct.ranker_config import (
    GenerationConfig,
    LikelihoodConfig,
    RankerConfig,
    RankerSpec,
    VerbaliserConfig,
)
from llmrec.paradigms.direct.ranker_stats import RankerStats
from llmrec.paradigms.direct.tuning import (
    TuneConfig,
    TuneReport,
    load_tuned,
    save_tuned,
    tune_ranker,
)
from llmrec.runtime import runtime_options

__all__ = [
    "GenerationConfig",
    "GenerationRanker",
    "LikelihoodConfig",
    "LikelihoodRanker",
    "Ranker",
    "RankerConfig",
    "RankerSpec",
    "RankerStats",
    "VerbaliserConfig",
    "VerbaliserRanker",
    "make_ranker",
]

_LABEL_INSTRUCTION = "Which candidate will the user choose next? Answer with its letter."
_NEXT_INSTRUCTION = "Which item will the user choose next?"


class Ranker(ABC):
    """Base of the LM rankers. Subclasses set ``kind``, ``config_class``, :meth:`_ask` and
    :meth:`_finish`.

    Args:
        config: a config object or dict (validated), updated by ``overrides``.
        lm: the backend to use; when ``None`` it is loaded from ``config.lm`` on first use.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[RankerConfig]] = RankerConfig
    runtime: Any = None  # the RuntimeOptions its LM loads with (TwoStage sets its own)
    tune_report: TuneReport | None = None

    def __init__(
        self,
        config: RankerConfig | Mapping[str, Any] | None = None,
        *,
        lm: LanguageModel | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, RankerConfig):
            config = config.model_dump()
        data = {**dict(config or {}), **overrides}
        if lm is not None and "lm" not in data and _loadable(lm.model_id):
            data["lm"] = lm.model_id  # so a saved TwoStage reloads the same model
        self.config = validated(self.config_class, data, f"invalid {type(self).__name__} config")
        self._lm = lm
        self.stats = RankerStats()
        self._builder: PromptBuilder | None = None
        self._titles: list[str] = []

    @property
    def lm(self) -> LanguageModel:
        """The backend (loaded from ``config.lm`` on first use when none was given)."""
        if self._lm is None:
            from llmrec.lm.registry import load_lm

            self._lm = load_lm(self.config.lm, runtime=self.runtime, **self.config.lm_options)
        return self._lm

    @property
    def batch_size(self) -> int:
        """Users per LM call: ``config.batch_size``, or sized from the runtime's device."""
        return runtime_options(self.runtime).batch_users(self.config.batch_size)

    # --- fitting -------------------------------------------------------------------------------
    def fit(self, train: Dataset) -> Self:
        """Bind the item texts, user attributes and few-shot pool of ``train``; with a ``tune``
        block (verbaliser, likelihood), adapt the LM on it too (:mod:`.tuning`)."""
        cfg = self.config.prompt
        texts = (
            train.item_texts(cfg.item_template)
            if len(train.item_text.columns)
            else [str(i) for i in train.item_ids]
        )
        profiles = user_profiles(train, cfg.profile_fields)
        self.bind(texts, profiles, train.history())
        if self.tune_config is not None:
            self.tune_report = tune_ranker(self, train, self.tune_config)
        return self

    @property
    def tune_config(self) -> TuneConfig | None:
        """The ``tune`` block of this ranker's config (``None``: zero-shot)."""
        tune = getattr(self.config, "tune", None)
        return tune if isinstance(tune, TuneConfig) else None

    def save_tuned(self, folder: Path) -> None:
        """The tuned weights (safetensors) and :class:`TuneReport` into ``folder``."""
        save_tuned(self.lm, folder, self.tune_report)

    def load_tuned(self, folder: Path) -> None:
        """Apply the tuned weights :meth:`save_tuned` wrote to this ranker's LM."""
        self.tune_report = load_tuned(self.lm, folder)

    def bind(
        self,
        item_texts: Sequence[str],
        profiles: Sequence[Mapping[str, str]],
        shot_history: UserHistory | None,
    ) -> Self:
        """Bind already-rendered texts (what :meth:`fit` and a loaded model use)."""
        self._titles = list(item_texts)
        self._builder = PromptBuilder(
            self.config.prompt, item_texts, self.lm, profiles=profiles, shot_history=shot_history
        )
        return self

    @property
    def item_texts(self) -> list[str]:
        """The unquoted text of each item index, as bound by :meth:`fit`."""
        return list(self._titles)

    @property
    def builder(self) -> PromptBuilder:
        if self._builder is None:
            raise NotFittedError(f"{self.kind} ranker is not fitted; call fit(train) first")
        return self._builder

    @property
    def max_candidates(self) -> int | None:
        """The most candidates one prompt can hold: one index label each when the prompt lists
        them (26), no limit when it does not."""
        return len(LABELS) if self._shows_candidates() else None

    def with_prompt(self, **fields: Any) -> Self:
        """A fitted copy whose :class:`PromptConfig` has ``fields`` replaced, on the same LM
        instance, item texts, profiles and few-shot pool (what the prompt-sensitivity probe
        ranks with); its stats start at zero."""
        data = self.config.model_dump()
        data["prompt"] = {**data["prompt"], **fields}
        twin = type(self)(data, lm=self.lm)
        twin.runtime = self.runtime
        builder = self.builder
        return twin.bind(self._titles, builder.profiles, builder.shot_history)

    # --- ranking -------------------------------------------------------------------------------
    def rank(
        self,
        users: np.ndarray,
        history: UserHistory,
        candidates: np.ndarray,
        *,
        profiles: QueryProfiles | None = None,
    ) -> np.ndarray:
        """``(n, c)`` float32 scores of ``candidates`` ``(n, c)`` int64 for ``users`` ``(n,)``,
        given each user's ``history``; higher is better. ``profiles[u]``, when given, is the
        profile user index ``u``'s prompt shows (:mod:`llmrec.models.query`). A ranker tuned
        with ``order: shuffled`` shows each user's candidates in its own seeded order, as it was
        trained on shuffled lists; the scores still follow ``candidates``' order."""
        users = np.asarray(users, dtype=np.int64)
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or len(candidates) != len(users):
            raise ConfigError(f"candidates of shape {candidates.shape} for {len(users)} users")
        out = np.zeros(candidates.shape, dtype=np.float32)
        if not len(users):
            return out  # without loading the LM
        slots = self._presentation(users, candidates)
        shown = np.take_along_axis(candidates, slots, axis=1)
        work = progress.LMWork.of("ranking", self.config.lm, self.kind, unit="user")
        slices = progress.batches(len(users), self.batch_size, desc="rank", work=work)

        def ask(rows: slice) -> tuple[slice, list[Prompt], Any, float]:
            """A batch's prompts and the LM's answer: what an engine may run concurrently
            (it changes nothing here); the answers are turned into scores in batch order."""
            prompts = [
                self.prompt(int(u), history.of(int(u)), c, profile=self._profile(int(u), profiles))
                for u, c in zip(users[rows], shown[rows], strict=True)
            ]
            tic = time.perf_counter()
            answer = self._ask(prompts)
            return rows, prompts, answer, 1000.0 * (time.perf_counter() - tic)

        before = self.lm.stats.as_dict()
        for rows, prompts, answer, ms in engine_of(self.runtime, self.lm).map(ask, slices):
            out[rows] = self._finish(prompts, answer)
            self.stats.call_ms.append(ms)
        self._count_lm(before)
        self.stats.users += len(users)
        self.stats.candidates += int(candidates.size)
        np.put_along_axis(out, slots, out.copy(), axis=1)  # back to the given order
        return out

    def _presentation(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """``(n, c)``: the given slot shown first, second, ...: the given order, or for a ranker
        tuned with ``order: shuffled`` the candidates sorted by a random key per item, drawn
        from a generator seeded by (tune seed, user) — a function of the candidate *set*, so
        the order they were given in never reaches the LM."""
        n, c = candidates.shape
        tune = self.tune_config
        if tune is None or tune.order != "shuffled":
            return np.broadcast_to(np.arange(c), (n, c))
        n_items = len(self.builder.items)
        keys = [
            np.random.default_rng([tune.seed & 0xFFFFFFFF, int(u)]).random(n_items)[row]
            for u, row in zip(users, candidates, strict=True)
        ]
        return np.argsort(np.stack(keys), axis=1, kind="stable")

    def score_candidates(
        self,
        users: np.ndarray,
        candidates: np.ndarray,
        *,
        history: Dataset | UserHistory | None = None,
        profiles: QueryProfiles | None = None,
    ) -> np.ndarray:
        """The candidate-protocol verb of :class:`~llmrec.models.base.Recommender`."""
        if history is None:
            raise ConfigError("an LM ranker needs the users' history to write prompts")
        hist = history.history() if isinstance(history, Dataset) else history
        return self.rank(users, hist, candidates, profiles=profiles)

    def prompt(
        self,
        user: int,
        history: np.ndarray,
        candidates: np.ndarray,
        *,
        profile: Mapping[str, str] | None = None,
    ) -> Prompt:
        """The prompt this ranker writes for one user; ``profile`` (``{}``: none) replaces the
        user's stored attributes."""
        return self.builder.build(
            user,
            history,
            candidates,
            instruction=self._instruction(len(candidates)),
            show_candidates=self._shows_candidates(),
            style=self._answer_style(),
            profile=profile,
        )

    def _profile(self, user: int, profiles: QueryProfiles | None) -> dict[str, str] | None:
        """The attributes ``profiles`` gives user index ``user`` (``None``: the stored ones)."""
        if profiles is None:
            return None
        spec = profiles[user]
        if isinstance(spec, int):
            stored = self.builder.profiles
            return dict(stored[spec]) if 0 <= spec < len(stored) else {}
        return dict(spec)

    def _instruction(self, n_candidates: int) -> str:
        return _LABEL_INSTRUCTION

    def _shows_candidates(self) -> bool:
        return True

    def _answer_style(self) -> Literal["label", "title"]:
        return "label"

    def _count_lm(self, before: Mapping[str, float]) -> None:
        after = self.lm.stats.as_dict()
        self.stats.lm_calls += int(after["calls"] - before["calls"])
        self.stats.prompt_tokens += int(after["prompt_tokens"] - before["prompt_tokens"])
        self.stats.generated_tokens += int(after["generated_tokens"] - before["generated_tokens"])

    @abstractmethod
    def _ask(self, prompts: list[Prompt]) -> Any:
        """The LM's answer to a batch of prompts; no side effects (it may run concurrently)."""

    def _finish(self, prompts: list[Prompt], answer: Any) -> np.ndarray:
        """``(len(prompts), c)`` scores from :meth:`_ask`'s answer; keeps the stats."""
        return np.asarray(answer, dtype=np.float32)


class VerbaliserRanker(Ranker):
    """Scores = log-probabilities of the candidates' labels as the next token (one pass)."""

    kind = "verbaliser"
    config_class = VerbaliserConfig
    config: VerbaliserConfig

    def _ask(self, prompts: list[Prompt]) -> np.ndarray:
        return self.lm.score_next_batch([p.score_text for p in prompts], prompts[0].labels)

    def _finish(self, prompts: list[Prompt], answer: Any) -> np.ndarray:
        labels = prompts[0].labels
        logprobs = np.asarray(answer, dtype=np.float32)
        self.stats.label_mass.extend(np.exp(logprobs).sum(axis=1).tolist())
        if self.config.calibrate:
            logprobs = _over_labels(logprobs) - self.label_prior(len(labels))
        return logprobs

    def label_prior(self, n_candidates: int) -> np.ndarray:
        """``(n_candidates,)`` float32 log-probabilities of the labels (renormalised over the
        labels) after a content-free prompt; computed once per length."""
        priors: dict[int, np.ndarray] = self.__dict__.setdefault("_priors", {})
        if n_candidates not in priors:
            empty = PromptBuilder(
                self.config.prompt, ["N/A"] * n_candidates, self.lm, profiles=[]
            ).build(
                -1,
                np.zeros(0, dtype=np.int64),
                np.arange(n_candidates),
                instruction=self._instruction(n_candidates),
            )
            raw = self.lm.score_next_batch([empty.score_text], empty.labels)
            priors[n_candidates] = _over_labels(np.asarray(raw, dtype=np.float32))[0]
        return priors[n_candidates]


def _over_labels(logprobs: np.ndarray) -> np.ndarray:
    """Log-probabilities renormalised over the labels of each row."""
    return logprobs - np.logaddexp.reduce(logprobs, axis=1, keepdims=True)


class LikelihoodRanker(Ranker):
    """Scores = (length-normalised) log-likelihood of each candidate's text after the prompt."""

    kind = "likelihood"
    config_class = LikelihoodConfig
    config: LikelihoodConfig

    def _instruction(self, n_candidates: int) -> str:
        return _NEXT_INSTRUCTION

    def _shows_candidates(self) -> bool:
        return self.config.show_candidates

    def _answer_style(self) -> Literal["label", "title"]:
        return "title"

    def _ask(self, prompts: list[Prompt]) -> np.ndarray:
        items = self.builder.items
        texts = [p.score_text for p in prompts]
        conts = [[f" {items[int(i)]}" for i in p.candidates] for p in prompts]
        answers = self.lm.loglikelihood_batch(texts, conts)  # one call for the users' batch
        out = np.stack([np.asarray(a, dtype=np.float32) for a in answers])
        if self.config.normalize:
            out = out / np.stack([self._lengths(t, c) for t, c in zip(texts, conts, strict=True)])
        return out

    def _lengths(self, prompt: str, conts: list[str]) -> np.ndarray:
        """Tokens each continuation adds to the prompt (at least 1)."""
        counts = self.lm.count_tokens([prompt, *(prompt + c for c in conts)])
        return np.maximum(1, np.asarray(counts[1:]) - counts[0]).astype(np.float32)


class GenerationRanker(Ranker):
    """Scores from a generated, grounded list: ranked candidates first, the rest in given order."""

    kind = "generation"
    config_class = GenerationConfig
    config: GenerationConfig

    def bind(
        self,
        item_texts: Sequence[str],
        profiles: Sequence[Mapping[str, str]],
        shot_history: UserHistory | None,
    ) -> Self:
        super().bind(item_texts, profiles, shot_history)
        self._grounder = Grounder(item_texts, self.config.min_similarity)
        return self

    def _instruction(self, n_candidates: int) -> str:
        n = min(self.config.top_n, n_candidates)
        if self.config.answer == "labels":
            return (
                f"List the letters of the {n} candidates the user is most likely to choose "
                "next, best first, separated by commas."
            )
        return (
            f"List the titles of the {n} candidates the user is most likely to choose next, "
            "best first, one per line."
        )

    def _answer_style(self) -> Literal["label", "title"]:
        return "label" if self.config.answer == "labels" else "title"

    def _max_new_tokens(self) -> int:
        if self.config.max_new_tokens is not None:
            return self.config.max_new_tokens
        return self.config.top_n * (16 if self.config.answer == "titles" else 3)

    def _ask(self, prompts: list[Prompt]) -> list[str]:
        return self.lm.generate(
            [p.generate_text for p in prompts], max_new_tokens=self._max_new_tokens()
        )

    def _finish(self, prompts: list[Prompt], answers: Any) -> np.ndarray:
        return np.stack([self._scores(p, a) for p, a in zip(prompts, answers, strict=True)])

    def _scores(self, prompt: Prompt, answer: str) -> np.ndarray:
        """Grounded ranks first, then the remaining candidates in the order given."""
        titles = [self._titles[int(i)] for i in prompt.candidates]
        got = self._grounder.ground(answer, titles, prompt.labels)
        s = self.stats
        s.unparseable += int(got.unparseable)
        s.hallucinations += got.hallucinations
        s.off_candidates += got.off_candidates
        s.duplicates += got.duplicates
        wanted = min(self.config.top_n, len(titles))
        s.partial += int(len(got.slots) < wanted)
        s.fallback_slots += len(titles) - len(got.slots)
        rest = [j for j in range(len(titles)) if j not in set(got.slots)]
        order = got.slots + rest
        scores = np.empty(len(titles), dtype=np.float32)
        scores[order] = np.arange(len(titles), 0, -1, dtype=np.float32)
        return scores


def _loadable(model_id: str) -> bool:
    """Whether :func:`~llmrec.lm.registry.load_lm` accepts ``model_id`` as a spec."""
    from llmrec.lm.registry import BACKENDS, PACKAGED

    scheme, sep, _ = model_id.partition(":")
    return model_id in PACKAGED or (bool(sep) and scheme in BACKENDS and scheme != "fake")


_RANKERS: dict[str, type[Ranker]] = {
    cls.kind: cls for cls in (VerbaliserRanker, LikelihoodRanker, GenerationRanker)
}


def make_ranker(
    config: RankerConfig | Mapping[str, Any], *, lm: LanguageModel | None = None
) -> Ranker:
    """The ranker a config names by its ``kind`` (``verbaliser``, ``likelihood``,
    ``generation``)."""
    data = config.model_dump() if isinstance(config, RankerConfig) else dict(config)
    kind = data.get("kind", "verbaliser")
    if kind not in _RANKERS:
        raise ConfigError(f"unknown ranker kind {kind!r}; choose {', '.join(_RANKERS)}")
    return _RANKERS[kind](data, lm=lm)
