"""The settings of the LM rankers (:mod:`llmrec.paradigms.direct.rankers`): what every ranker
shares (:class:`RankerConfig`) and each kind's own, told apart by ``kind`` (:data:`RankerSpec`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from llmrec.config import StrictConfig, renamed_keys
from llmrec.paradigms.direct.prompts import PromptConfig
from llmrec.paradigms.direct.tuning import TuneConfig
from llmrec.runtime import BatchSize

__all__ = [
    "GenerationConfig",
    "LikelihoodConfig",
    "RankerConfig",
    "RankerSpec",
    "VerbaliserConfig",
]


class RankerConfig(StrictConfig):
    """Settings shared by every ranker.

    Attributes:
        lm: the LM spec for :func:`~llmrec.lm.registry.load_lm` (used when no LM instance is
            given; also what a saved model reloads). Given an instance whose ``model_id`` is a
            spec (``smollm2-135m``, ``openai:URL#MODEL``), it defaults to that id.
        lm_options: options for ``load_lm``.
        prompt: the prompt templates.
        batch_size: users per LM call; ``auto``: 8 on the CPU, 128 on a GPU (runtime options).
    """

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
    tune: adapt the LM on the training split in :meth:`Ranker.fit` (``None``: zero-shot).
    """

    kind: Literal["verbaliser"] = "verbaliser"
    calibrate: bool = False
    tune: TuneConfig | None = None


class LikelihoodConfig(RankerConfig):
    """Attributes:
    show_candidates: also list the candidates in the prompt (costs tokens, adds position bias).
    normalize: divide each log-likelihood by the continuation's token count (``normalise``,
        the older spelling, is still read, with a :class:`DeprecationWarning`).
    tune: adapt the LM on the training split in :meth:`Ranker.fit` with the listwise loss
        over the candidates' log-likelihoods (``None``: zero-shot).
    """

    kind: Literal["likelihood"] = "likelihood"
    show_candidates: bool = False
    normalize: bool = True
    tune: TuneConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _older_spelling(cls, data: Any) -> Any:
        return renamed_keys(data, {"normalise": "normalize"}, "likelihood ranker")


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
