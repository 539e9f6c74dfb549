"""LM-generated tags: parsing, normalisation, vocabulary, retries and failures, caching."""

from collections.abc import Callable, Sequence

import pytest

from llmrec.lm.base import LanguageModel
from llmrec.lm.cache import CachedLM
from llmrec.lm.fake import FakeLM
from llmrec.paradigms.tokens.tags import (
    TagConfig,
    generate_item_tags,
    generate_user_tags,
    normalize_tag,
    parse_tags,
)
from llmrec.testing import tiny_dataset


class ScriptedLM(LanguageModel):
    """Answers ``script(prompt, attempt_seed, temperature)``; records every call."""

    model_id = "scripted"

    def __init__(self, script: Callable[[str, int, float], str], chat: bool = True) -> None:
        super().__init__()
        self.script = script
        self.chat = chat
        self.calls: list[tuple[list[str], float]] = []

    @property
    def has_chat_template(self) -> bool:
        return self.chat

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        self.calls.append((list(prompts), temperature))
        return [self.script(p, seed, temperature) for p in prompts]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("space opera, Rebellion, jedi knights", ["space opera", "rebellion", "jedi knight"]),
        ("1. Dark Comedy\n2. Kidnapping\n3. snow", ["dark comedy", "kidnapping", "snow"]),
        ('- "Comedies"\n- * family *', ["comedy", "family"]),
        ("Tags: war; drama | history", ["war", "drama", "history"]),
        ("a very long tag with too many words, short one", ["short one"]),
        ("the movie, 1995, !!!", []),
        ("war, War, wars", ["war"]),
        ("Genres: Adventure|Children's", ["adventure", "children"]),
        ("the 1996, classic 1977", ["classic"]),
    ],
)
def test_parse_tags_normalises_and_dedups(answer, expected):
    assert parse_tags(answer, n_tags=5, max_words=3) == expected


def test_parse_tags_keeps_at_most_n_and_ignores_rambling():
    assert parse_tags("a1, b2, c3, d4\n\nHere are more: e5, f6", n_tags=3) == ["a1", "b2", "c3"]


def test_normalize_tag_folds_simple_plurals_only():
    assert normalize_tag("Mysteries") == "mystery"
    assert normalize_tag("class") == "class"
    assert normalize_tag("thriller") == "thriller"


def test_vocabulary_keeps_tags_shared_by_enough_items():
    answers = {"A": "war, drama, rare one", "B": "war, drama", "C": "war, comedy"}
    lm = ScriptedLM(lambda p, s, t: answers[p.split("\n")[0].removeprefix("Movie: ")])
    result = generate_item_tags(lm, ["A", "B", "C"], TagConfig(min_count=2))
    assert result.vocabulary == ["war", "drama"]
    assert result.tags == [["war", "drama"], ["war", "drama"], ["war"]]
    assert result.parsed[0] == ["war", "drama", "rare one"]


def test_a_fixed_vocabulary_filters_the_tags():
    lm = ScriptedLM(lambda p, s, t: "war, drama, comedy")
    result = generate_item_tags(lm, ["A"], vocabulary=["comedy", "horror"])
    assert result.tags == [["comedy"]]


def test_unparseable_answers_are_retried_with_sampling():
    # item B answers garbage greedily, then something usable when sampled
    def script(prompt: str, seed: int, temperature: float) -> str:
        if prompt.startswith("Movie: B\n") and temperature == 0.0:
            return "!!!"
        return "war, drama"

    lm = ScriptedLM(script)
    result = generate_item_tags(lm, ["A", "B"], TagConfig(min_count=1))
    assert result.tags == [["war", "drama"], ["war", "drama"]]
    assert result.retried == [1] and result.failed == []
    retry_prompts, retry_temperature = lm.calls[-1]
    assert len(retry_prompts) == 1 and retry_temperature > 0


def test_persistently_unparseable_items_get_empty_sets_and_are_counted():
    lm = ScriptedLM(lambda p, s, t: "..." if p.startswith("Movie: B\n") else "war")
    result = generate_item_tags(lm, ["A", "B", "C"], TagConfig(min_count=1, retries=2))
    assert result.tags[1] == [] and result.failed == [1]
    assert len(lm.calls) == 3  # first pass, then two retries of item B alone
    assert result.summary()["failed"] == 1.0


def test_backend_errors_never_crash_the_run():
    lm = FakeLM(chat_template=True, fail_on="Movie: Movie 3.")
    data = tiny_dataset()
    result = generate_item_tags(lm, data.item_texts(), TagConfig(min_count=1, retries=1))
    assert result.tags[3] == [] and 3 in result.failed
    assert result.backend_errors >= 2
    assert all(result.tags[i] for i in range(len(result.tags)) if i != 3)


def test_few_shot_prompt_for_base_models_and_instruction_for_chat_models():
    base = ScriptedLM(lambda p, s, t: "war", chat=False)
    chat = ScriptedLM(lambda p, s, t: "war", chat=True)
    generate_item_tags(base, ["Heat (1995)"])
    generate_item_tags(chat, ["Heat (1995)"])
    base_prompt, chat_prompt = base.calls[0][0][0], chat.calls[0][0][0]
    assert base_prompt.endswith("Movie: Heat (1995)\nTags:") and "Star Wars" in base_prompt
    assert chat_prompt.startswith("Movie: Heat (1995)\nWrite 5 short descriptive tags")


def test_user_tags_read_profile_and_recent_history():
    data = tiny_dataset()
    lm = ScriptedLM(lambda p, s, t: "drama lover, classic")
    result = generate_user_tags(lm, data, [0, 1], TagConfig(min_count=1, history_items=2))
    prompt = lm.calls[0][0][0]
    recent = data.history().of(0)[-2:]
    assert f"Movie {recent[-1]}" in prompt and f"Movie {recent[0]}" in prompt
    assert "gender M" in prompt and "age 18" in prompt
    assert result.tags == [["drama lover", "classic"]] * 2


def test_cached_lm_serves_the_second_run(tmp_path):
    texts = tiny_dataset().item_texts()
    cfg = TagConfig(min_count=1)
    first = generate_item_tags(CachedLM(FakeLM(chat_template=True), tmp_path), texts, cfg)
    lm = CachedLM(FakeLM(chat_template=True), tmp_path)
    second = generate_item_tags(lm, texts, cfg)
    assert second.tags == first.tags
    assert lm.stats.cache_hits == len(texts)
