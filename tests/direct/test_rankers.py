"""The three LM rankers and TwoStage, on FakeLM and scripted backends."""

import json
import threading
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.errors import ConfigError, NotFittedError
from llmrec.eval import evaluate, evaluate_candidates
from llmrec.lm.fake import FakeLM
from llmrec.models.base import Recommender
from llmrec.models.popularity import Popularity
from llmrec.models.query import same_profile
from llmrec.paradigms.direct import (
    GenerationRanker,
    LikelihoodRanker,
    TwoStage,
    VerbaliserRanker,
    make_ranker,
)
from llmrec.paradigms.direct.rankers import LikelihoodConfig
from llmrec.testing import RecommenderConformance, tiny_dataset


@pytest.fixture(scope="module")
def split():
    return leave_one_out(tiny_dataset())


class ScriptedLM(FakeLM):
    """FakeLM whose answers are set by the test."""

    def __init__(self, answers: Sequence[str] = (), prefer: int | None = None) -> None:
        super().__init__()
        self.answers = list(answers)
        self.prefer = prefer
        self.prompts: list[str] = []

    def generate(self, prompts, *, max_new_tokens=64, temperature=0.0, stop=(), seed=0):
        self._begin(prompts)
        self.prompts.extend(prompts)
        return [self.answers.pop(0) for _ in prompts]

    def score_next_batch(self, prompts, labels):
        self._begin(prompts)
        self.prompts.extend(prompts)
        out = np.full((len(prompts), len(labels)), -5.0, dtype=np.float32)
        out[:, self.prefer if self.prefer is not None else 0] = -0.1
        return out


def test_verbaliser_scores_are_label_logprobs_and_batched(split):
    class CountingLM(FakeLM):
        batches: ClassVar[list[int]] = []

        def score_next_batch(self, prompts, labels):
            self.batches.append(len(prompts))
            return super().score_next_batch(prompts, labels)

    lm = CountingLM()
    ranker = VerbaliserRanker(lm=lm, batch_size=3).fit(split.train)
    hist = split.train.history()
    users = np.arange(7)
    cands = np.tile(np.arange(5), (7, 1))
    scores = ranker.rank(users, hist, cands)
    expected = lm.score_next(
        ranker.prompt(2, hist.of(2), cands[2]).score_text, [" A", " B", " C", " D", " E"]
    )
    np.testing.assert_allclose(scores[2], expected, rtol=1e-6)
    assert lm.batches == [3, 3, 1]
    assert ranker.stats.lm_calls == 3  # one call per batch, as every backend counts it
    assert ranker.stats.users == 7 and len(ranker.stats.call_ms) == 3
    assert all(0 < m <= 1 for m in ranker.stats.label_mass)


def test_likelihood_is_length_normalised(split):
    class LengthLM(FakeLM):
        def loglikelihood(self, prompt, continuations):
            self._begin([prompt])
            return np.array([-1.0 * len(c.split()) for c in continuations], dtype=np.float32)

    train = split.train
    train.item_text.loc[:, "title"] = [f"Movie {'x ' * i}" for i in range(train.n_items)]
    try:
        ranker = LikelihoodRanker(lm=LengthLM()).fit(train)
        scores = ranker.rank(np.array([0]), train.history(), np.array([[1, 5, 9]]))
        # per-token loglik is constant, so normalised scores are (nearly) equal, raw ones are not
        raw = LikelihoodRanker(lm=LengthLM(), normalize=False).fit(train)
        raw_scores = raw.rank(np.array([0]), train.history(), np.array([[1, 5, 9]]))
    finally:
        train.item_text.loc[:, "title"] = [f"Movie {i}" for i in range(train.n_items)]
    assert np.ptp(raw_scores) > 3
    assert np.ptp(scores) < np.ptp(raw_scores) / 3


def test_the_older_spelling_normalise_is_still_read_with_a_warning():
    with pytest.warns(DeprecationWarning, match="normalise is now normalize"):
        config = LikelihoodConfig.model_validate({"kind": "likelihood", "normalise": False})
    assert config.normalize is False
    with pytest.warns(DeprecationWarning):
        assert LikelihoodRanker(lm=FakeLM(), normalise=False).config.normalize is False
    with pytest.raises(ConfigError, match="normalise"):  # both spellings: the old is unknown
        LikelihoodRanker(lm=FakeLM(), normalize=True, normalise=False)


def test_a_saved_folder_with_the_older_spelling_still_loads(split, tmp_path):
    model = TwoStage({"ranker": {"kind": "likelihood", "normalize": False}}).fit(split.train)
    folder = model.save(tmp_path / "two-stage")
    meta = json.loads((folder / "config.json").read_text())
    ranker = meta["config"]["ranker"]
    ranker["normalise"] = ranker.pop("normalize")
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.warns(DeprecationWarning, match="normalise is now normalize"):
        loaded = Recommender.load(folder)
    assert loaded.config.ranker.normalize is False


def test_likelihood_prompt_hides_candidates_by_default(split):
    ranker = LikelihoodRanker(lm=FakeLM()).fit(split.train)
    text = ranker.prompt(0, np.array([1, 2]), np.array([3, 4])).score_text
    assert "Candidates:" not in text
    shown = LikelihoodRanker(lm=FakeLM(), show_candidates=True).fit(split.train)
    assert "Candidates:" in shown.prompt(0, np.array([1, 2]), np.array([3, 4])).score_text


def test_generation_grounds_answers_and_falls_back_to_given_order(split):
    answers = [
        "Movie 4\nMovie 2",  # partial: 4, 2 then the rest in given order
        "I like films.",  # unparseable: given order
        "Movie 3\nMovie 3\nThe Matrix Reloaded Again\nMovie 29",  # dup, hallucination, off-cand.
    ]
    ranker = GenerationRanker(lm=ScriptedLM(answers), batch_size=3, top_n=3).fit(split.train)
    cands = np.array([[1, 2, 3, 4]] * 3)
    scores = ranker.rank(np.arange(3), split.train.history(), cands)
    order = [list(cands[r][np.argsort(-scores[r], kind="stable")]) for r in range(3)]
    assert order[0] == [4, 2, 1, 3]
    assert order[1] == [1, 2, 3, 4]
    assert order[2] == [3, 1, 2, 4]
    s = ranker.stats
    # "I like films." is an entry matching nothing too: a hallucination as much as the Matrix
    assert (s.unparseable, s.duplicates, s.hallucinations, s.off_candidates) == (1, 1, 2, 1)
    assert s.partial == 3 and s.fallback_slots == 2 + 4 + 3
    assert s.lm_calls == 1 and s.generated_tokens == 0  # the scripted LM counts none


def test_generation_with_labels_answer(split):
    ranker = GenerationRanker(lm=FakeLM(), answer="labels", top_n=4).fit(split.train)
    scores = ranker.rank(np.array([0]), split.train.history(), np.array([[5, 6, 7, 8]]))
    assert sorted(scores[0].tolist()) == [1.0, 2.0, 3.0, 4.0]
    assert ranker.stats.unparseable == 0 and ranker.stats.fallback_slots == 0


def test_unfitted_ranker_says_so():
    with pytest.raises(NotFittedError):
        VerbaliserRanker(lm=FakeLM()).prompt(0, np.array([1]), np.array([1, 2]))


def test_make_ranker_by_kind_and_unknown_kind():
    assert isinstance(make_ranker({"kind": "likelihood"}), LikelihoodRanker)
    with pytest.raises(ConfigError, match="unknown ranker kind"):
        make_ranker({"kind": "oracle"})
    with pytest.raises(ValueError):
        VerbaliserRanker(no_such_option=1)


def test_a_given_profile_changes_only_the_profile(split):
    ranker = VerbaliserRanker(lm=FakeLM(), prompt={"profile_fields": ["gender"]}).fit(split.train)
    own = ranker.prompt(0, np.array([1]), np.array([1, 2])).score_text
    other = ranker.prompt(0, np.array([1]), np.array([1, 2]), profile={"gender": "nonbinary"})
    assert "gender: M" in own and "gender: nonbinary" in other.score_text
    assert own.replace("gender: M", "gender: nonbinary") == other.score_text
    assert ranker.prompt(0, np.array([1]), np.array([1, 2])).score_text == own


def test_interleaved_queries_each_see_their_own_profiles(split):
    """Profiles are arguments, not state: two queries ranking at once on one ranker (each
    waits inside the LM call for the other) write prompts with their own profile only."""

    class MeetingLM(ScriptedLM):
        def __init__(self) -> None:
            super().__init__()
            self.meet = threading.Barrier(2, timeout=10)
            self.seen: dict[str, list[str]] = {}

        def score_next_batch(self, prompts, labels):
            self.seen.setdefault(threading.current_thread().name, []).extend(prompts)
            self.meet.wait()
            return super().score_next_batch(prompts, labels)

    lm = MeetingLM()
    ranker = VerbaliserRanker(lm=lm, batch_size=1, prompt={"profile_fields": ["gender"]})
    ranker.fit(split.train)
    hist = split.train.history()
    users, cands = np.array([0, 1, 2]), np.tile(np.arange(4), (3, 1))

    def query(gender: str) -> None:
        profiles = same_profile(users.tolist(), {"gender": gender})
        ranker.rank(users, hist, cands, profiles=profiles)

    threads = [threading.Thread(target=query, args=(g,), name=g) for g in ("Q1", "Q2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mine, theirs in (("Q1", "Q2"), ("Q2", "Q1")):
        assert len(lm.seen[mine]) == 3
        assert all(f"gender: {mine}" in p and theirs not in p for p in lm.seen[mine])


def test_two_stage_reranks_the_retrievers_top_candidates(split):
    n_cand = 6
    lm = ScriptedLM(prefer=n_cand - 1)  # always prefers the last candidate shown
    model = TwoStage(Popularity(), VerbaliserRanker(lm=lm), n_candidates=n_cand).fit(split.train)
    retriever = Popularity().fit(split.train)
    users = np.array([0, 3])
    # the full list: at a cutoff, the base class's argpartition breaks score ties arbitrarily
    alone = retriever.recommend(users, split.train.n_items).items[:, :10]
    both = model.recommend(users, 10).items
    for row in range(len(users)):
        assert both[row, 0] == alone[row, n_cand - 1]
        assert set(both[row, :n_cand]) == set(alone[row, :n_cand])
        np.testing.assert_array_equal(both[row, n_cand:], alone[row, n_cand:])
    assert model.ranker.stats.users == 2


def test_two_stage_in_the_candidate_protocol_skips_the_retriever(split):
    model = TwoStage(Popularity(), VerbaliserRanker(lm=FakeLM())).fit(split.train)
    result = evaluate_candidates(model, split, n_negatives=9, ks=(1, 5, 10))
    assert result.metrics["n_users"] == len(split.test.active_users())
    assert model.ranker.stats.candidates == 10 * len(split.test.active_users())
    assert 0.0 <= result.metrics["ndcg@10"] <= 1.0


def test_fake_lm_ranker_uses_the_history_signal(split):
    """FakeLM prefers candidates sharing words with the prompt; history titles share the
    user's half ("Movie 3" vs the other half), so an LM ranker beats a random order."""
    ranker = TwoStage(Popularity(), LikelihoodRanker(lm=FakeLM())).fit(split.train)
    full = evaluate(ranker, split, ks=(10,))
    assert full.violations["seen_items"] == 0 and full.violations["duplicates"] == 0


class TestTwoStageConformance(RecommenderConformance):
    def make_model(self):
        return TwoStage(Popularity(), VerbaliserRanker(lm=FakeLM()), n_candidates=8)


class TestTwoStageGenerationConformance(RecommenderConformance):
    def make_model(self):
        return TwoStage({"ranker": {"kind": "generation", "lm": "fake"}, "n_candidates": 6})


class LabelBiasedLM(FakeLM):
    """Prefers label A by 3 nats whatever the prompt, and a candidate whose title is in the
    history by 2 nats: a model with a strong label prior and a weaker real signal."""

    def score_next_batch(self, prompts, labels):
        self._begin(prompts)
        rows = []
        for prompt in prompts:
            history = {ln[2:] for ln in prompt.splitlines() if ln.startswith("- ")}
            cands = [ln[3:] for ln in prompt.splitlines() if ln[:1].isupper() and ln[1:3] == ". "]
            logits = np.array([2.0 * (c in history) for c in cands], dtype=np.float64)
            logits[0] += 3.0
            rows.append(logits - np.logaddexp.reduce(logits))
        return np.asarray(rows, dtype=np.float32)


def test_calibration_removes_a_label_prior(split):
    hist = split.train.history()
    user = 0
    seen = int(hist.of(user)[-1])
    others = [i for i in range(split.train.n_items) if i not in set(hist.of(user).tolist())]
    cands = np.array([[others[0], seen, others[1]]])
    raw = VerbaliserRanker(lm=LabelBiasedLM()).fit(split.train)
    cal = VerbaliserRanker(lm=LabelBiasedLM(), calibrate=True).fit(split.train)
    assert np.argmax(raw.rank(np.array([user]), hist, cands)[0]) == 0
    scores = cal.rank(np.array([user]), hist, cands)[0]
    assert np.argmax(scores) == 1
    np.testing.assert_allclose(
        cal.label_prior(3), np.log([np.e**3, 1, 1]) - np.log(np.e**3 + 2), rtol=1e-5
    )


def test_ranker_config_names_the_lm_instance_it_was_given():
    class Named(FakeLM):
        pass

    lm = Named()
    lm.model_id = "smollm2-135m"
    assert VerbaliserRanker(lm=lm).config.lm == "smollm2-135m"
    assert VerbaliserRanker(lm=FakeLM()).config.lm == "fake"
    assert VerbaliserRanker({"lm": "gemma3-270m"}, lm=lm).config.lm == "gemma3-270m"
