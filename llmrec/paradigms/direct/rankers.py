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
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmrec import progress
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError, NotFittedError
from llmrec.lm.base import LanguageModel
from llmrec.models.query import QueryProfiles
from llmrec.paradigms.direct.grounding import Grounder
from llmrec.paradigms.direct.prompts import Prompt, PromptBuilder, PromptConfig, user_profiles
from llmrec.runtime import BatchSize, runtime_options

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


class RankerConfig(BaseModel):
    """Settings shared by every ranker.

    Attributes:
        lm: the LM spec for :func:`~llmrec.lm.registry.load_lm` (used when no LM instance is
            given; also what a saved model reloads). Given an instance whose ``model_id`` is a
            spec (``smollm2-135m``, ``openai:URL#MODEL``), it defaults to that id.
        lm_options: options for ``load_lm``.
        prompt: the prompt templates.
        batch_size: users per LM call; ``auto``: 8 on the CPU, 128 on a GPU (runtime options).
    """

    model_config = ConfigDict(extra="forbid")

    lm: str = "fake"
    lm_options: dict[str, Any] = Field(default_factory=dict)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    batch_size: BatchSize = "auto"


class VerbaliserConfig(RankerConfig):
    """Attributes:
    calibrate: subtract the label prior of a content-free prompt (no history, every
        candidate ``"N/A"``) from each prompt's label log-probabilities — contextual
        calibration (Zhao et al., 2021) against the model's preference for some labels.
        Costs one extra forward per candidate-list length, not per user.
    """

    kind: Literal["verbaliser"] = "verbaliser"
    calibrate: bool = False


class LikelihoodConfig(RankerConfig):
    """Attributes:
    show_candidates: also list the candidates in the prompt (costs tokens, adds position bias).
    normalise: divide each log-likelihood by the continuation's token count.
    """

    kind: Literal["likelihood"] = "likelihood"
    show_candidates: bool = False
    normalise: bool = True


class GenerationConfig(RankerConfig):
    """Attributes:
    top_n: how many candidates the LM is asked to list (the rest keep the given order).
    answer: ask for titles (grounded by fuzzy match) or for index labels.
    max_new_tokens: generation budget; ``None`` allows 16 tokens per title, 3 per label.
    min_similarity: difflib ratio for a fuzzy title match.
    """

    kind: Literal["generation"] = "generation"
    top_n: int = Field(default=5, ge=1, le=26)
    answer: Literal["titles", "labels"] = "titles"
    max_new_tokens: int | None = Field(default=None, ge=1)
    min_similarity: float = Field(default=0.75, gt=0.0, le=1.0)


RankerSpec = Annotated[
    VerbaliserConfig | LikelihoodConfig | GenerationConfig, Field(discriminator="kind")
]


@dataclass
class RankerStats:
    """What a ranker spent and how its answers parsed.

    Attributes:
        users: user rows ranked.
        candidates: candidate slots ranked (users x candidates).
        lm_calls, prompt_tokens, generated_tokens: LM cost (from the backend's counters).
        call_ms: wall milliseconds of each :meth:`Ranker.rank` batch (per user when
            ``batch_size=1``).
        unparseable: answers that named no candidate (generation).
        hallucinations: answer entries matching no catalogue item (generation).
        off_candidates: entries naming a catalogue item that was not a candidate (generation).
        duplicates: entries naming an already-ranked candidate (generation).
        partial: answers that ranked fewer candidates than asked (generation).
        fallback_slots: candidate slots ordered by the fallback (given order), not the LM.
        label_mass: summed probability of all labels, per prompt (verbaliser).
    """

    users: int = 0
    candidates: int = 0
    lm_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    call_ms: list[float] = field(default_factory=list)
    unparseable: int = 0
    hallucinations: int = 0
    off_candidates: int = 0
    duplicates: int = 0
    partial: int = 0
    fallback_slots: int = 0
    label_mass: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Counters plus p50/p95 of ``call_ms`` and mean ``label_mass`` (lists dropped)."""
        out: dict[str, float] = {
            k: float(v) for k, v in asdict(self).items() if not isinstance(v, list)
        }
        if self.call_ms:
            out["call_ms_p50"] = float(np.percentile(self.call_ms, 50))
            out["call_ms_p95"] = float(np.percentile(self.call_ms, 95))
        if self.label_mass:
            out["label_mass_mean"] = float(np.mean(self.label_mass))
        return out


class Ranker(ABC):
    """Base of the LM rankers. Subclasses set ``kind``/``config_class`` and :meth:`_rank_batch`.

    Args:
        config: a config object or dict (validated), updated by ``overrides``.
        lm: the backend to use; when ``None`` it is loaded from ``config.lm`` on first use.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[RankerConfig]] = RankerConfig
    runtime: Any = None  # the RuntimeOptions its LM loads with (TwoStage sets its own)

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
        self.config = self.config_class.model_validate(data)
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
        """Bind the item texts, user attributes and few-shot pool of ``train``."""
        cfg = self.config.prompt
        texts = (
            train.item_texts(cfg.item_template)
            if len(train.item_text.columns)
            else [str(i) for i in train.item_ids]
        )
        profiles = user_profiles(train, cfg.profile_fields)
        return self.bind(texts, profiles, train.history())

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
        profile user index ``u``'s prompt shows (:mod:`llmrec.models.query`)."""
        users = np.asarray(users, dtype=np.int64)
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or len(candidates) != len(users):
            raise ConfigError(f"candidates of shape {candidates.shape} for {len(users)} users")
        out = np.zeros(candidates.shape, dtype=np.float32)
        work = progress.LMWork.of("ranking", self.config.lm, self.kind, unit="user")
        for rows in progress.batches(len(users), self.batch_size, desc="rank", work=work):
            prompts = [
                self.prompt(int(u), history.of(int(u)), c, profile=self._profile(int(u), profiles))
                for u, c in zip(users[rows], candidates[rows], strict=True)
            ]
            before = self.lm.stats.as_dict()
            tic = time.perf_counter()
            out[rows] = self._rank_batch(prompts)
            self.stats.call_ms.append(1000.0 * (time.perf_counter() - tic))
            self._count_lm(before)
        self.stats.users += len(users)
        self.stats.candidates += int(candidates.size)
        return out

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
    def _rank_batch(self, prompts: list[Prompt]) -> np.ndarray:
        """``(len(prompts), c)`` scores aligned with each prompt's candidates."""


class VerbaliserRanker(Ranker):
    """Scores = log-probabilities of the candidates' labels as the next token (one pass)."""

    kind = "verbaliser"
    config_class = VerbaliserConfig
    config: VerbaliserConfig

    def _rank_batch(self, prompts: list[Prompt]) -> np.ndarray:
        labels = prompts[0].labels
        logprobs = np.asarray(
            self.lm.score_next_batch([p.score_text for p in prompts], labels), dtype=np.float32
        )
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

    def _rank_batch(self, prompts: list[Prompt]) -> np.ndarray:
        items = self.builder.items
        texts = [p.score_text for p in prompts]
        conts = [[f" {items[int(i)]}" for i in p.candidates] for p in prompts]
        answers = self.lm.loglikelihood_batch(texts, conts)  # one call for the users' batch
        out = np.stack([np.asarray(a, dtype=np.float32) for a in answers])
        if self.config.normalise:
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

    def _rank_batch(self, prompts: list[Prompt]) -> np.ndarray:
        answers = self.lm.generate(
            [p.generate_text for p in prompts], max_new_tokens=self._max_new_tokens()
        )
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
