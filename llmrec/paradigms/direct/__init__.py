"""Paradigm 3, the LM as the recommender: prompts, LM rankers and ``TwoStage``.

See ``docs/direct.md``. Nothing heavy is imported here; LM backends load on first use.
"""

from llmrec.paradigms.direct.grounding import Grounded, Grounder, normalize_title
from llmrec.paradigms.direct.prompts import Prompt, PromptBuilder, PromptConfig, quote_item
from llmrec.paradigms.direct.rankers import (
    GenerationConfig,
    GenerationRanker,
    LikelihoodConfig,
    LikelihoodRanker,
    Ranker,
    RankerConfig,
    RankerStats,
    VerbaliserConfig,
    VerbaliserRanker,
    make_ranker,
)
from llmrec.paradigms.direct.tuning import TuneConfig, TuneReport
from llmrec.paradigms.direct.two_stage import TwoStage, TwoStageConfig

__all__ = [
    "GenerationConfig",
    "GenerationRanker",
    "Grounded",
    "Grounder",
    "LikelihoodConfig",
    "LikelihoodRanker",
    "Prompt",
    "PromptBuilder",
    "PromptConfig",
    "Ranker",
    "RankerConfig",
    "RankerStats",
    "TuneConfig",
    "TuneReport",
    "TwoStage",
    "TwoStageConfig",
    "VerbaliserConfig",
    "VerbaliserRanker",
    "make_ranker",
    "normalize_title",
    "quote_item",
]
