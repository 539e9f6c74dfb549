"""The prompt paraphrases and the ranker copies the prompt-sensitivity probe ranks with."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.lm.fake import FakeLM
from llmrec.paradigms.direct import (
    GenerationRanker,
    LikelihoodRanker,
    PromptConfig,
    VerbaliserRanker,
)
from llmrec.paradigms.direct.variants import PROMPT_VARIANTS
from llmrec.testing import tiny_dataset


@pytest.fixture(scope="module")
def split():
    return leave_one_out(tiny_dataset())


def test_default_changes_nothing_and_every_paraphrase_rewrites_the_wording() -> None:
    assert PROMPT_VARIANTS["default"].fields("verbaliser") == {}
    defaults = PromptConfig()
    for name, variant in PROMPT_VARIANTS.items():
        if name == "default":
            continue
        fields = variant.fields("verbaliser")
        assert "answer_prefix" in fields, name
        for line in ("intro", "history_header", "candidates_header"):
            assert fields[line] != getattr(defaults, line), (name, line)
        assert "data" in fields["intro"], name  # the prompt-injection guard stays
        assert "letter" in fields["instruction"].lower(), name  # the verbaliser's labels
        assert "instruction" in variant.fields("likelihood"), name
        assert "instruction" not in variant.fields("generation"), name  # it counts its titles


@pytest.mark.parametrize("name", [n for n in PROMPT_VARIANTS if n != "default"])
def test_with_prompt_rewrites_the_prompt_around_the_same_data(split, name: str) -> None:
    ranker = VerbaliserRanker(lm=FakeLM()).fit(split.train)
    fields = PROMPT_VARIANTS[name].fields("verbaliser")
    twin = ranker.with_prompt(**fields)
    hist, cands = split.train.history().of(0), np.arange(12)
    own, other = ranker.prompt(0, hist, cands), twin.prompt(0, hist, cands)
    assert twin.lm is ranker.lm and twin.kind == ranker.kind
    for key, text in fields.items():
        assert text in other.score_text, key
        if key != "answer_prefix":  # some paraphrases keep the default "Answer:"
            assert text not in own.score_text, key
    assert other.score_text.endswith(fields["answer_prefix"])
    assert other.labels == own.labels
    assert other.history.tolist() == own.history.tolist()
    assert other.candidates.tolist() == own.candidates.tolist()
    assert ranker.config.prompt.instruction is None  # the original is untouched
    twin.rank(np.array([0, 1]), split.train.history(), np.stack([cands, cands]))
    assert twin.stats.users == 2 and ranker.stats.users == 0


def test_max_candidates_is_the_label_count_when_candidates_are_listed(split) -> None:
    lm = FakeLM()
    assert VerbaliserRanker(lm=lm).max_candidates == 26
    assert GenerationRanker(lm=lm).max_candidates == 26
    assert LikelihoodRanker(lm=lm).max_candidates is None
    assert LikelihoodRanker(lm=lm, show_candidates=True).max_candidates == 26
