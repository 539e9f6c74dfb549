"""Every ranker kind sends a batch of users to its LM in one call, with the scores of one user
at a time; ``batch_size: auto`` is today's 8 on the CPU and 128 on a GPU, and evaluation hands a
two-stage model one LM batch at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec import runtime
from llmrec.data.splits import leave_one_out
from llmrec.eval import evaluate
from llmrec.lm.fake import FakeLM
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import GenerationRanker, LikelihoodRanker, TwoStage, VerbaliserRanker
from llmrec.runtime import RuntimeOptions
from llmrec.testing import tiny_dataset

KINDS = [VerbaliserRanker, LikelihoodRanker, GenerationRanker]


@pytest.fixture(scope="module")
def split():
    return leave_one_out(tiny_dataset())


class CountingLM(FakeLM):
    """FakeLM recording how many prompts each batched call carried."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def score_next_batch(self, prompts, labels):
        self.batches.append(len(prompts))
        return super().score_next_batch(prompts, labels)

    def loglikelihood_batch(self, prompts, continuations):
        self.batches.append(len(prompts))
        return super().loglikelihood_batch(prompts, continuations)

    def generate(self, prompts, **kw):
        self.batches.append(len(prompts))
        return super().generate(prompts, **kw)


def _pretend_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 'sees' one GPU: only the device resolution is faked, no CUDA call is made."""
    monkeypatch.setattr(runtime, "_cuda", lambda: (True, 1))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_one_lm_call_per_batch_of_users_with_the_scores_of_one_at_a_time(split, kind) -> None:
    hist = split.train.history()
    users = np.arange(7)
    cands = np.tile(np.arange(5), (7, 1)) + users[:, None]
    lm = CountingLM()
    batched = kind(lm=lm, batch_size=3).fit(split.train)
    scores = batched.rank(users, hist, cands)
    assert lm.batches == [3, 3, 1]
    assert batched.stats.lm_calls == 3
    alone = kind(lm=FakeLM(), batch_size=1).fit(split.train).rank(users, hist, cands)
    np.testing.assert_array_equal(scores, alone)


def test_likelihood_ranker_on_a_real_transformer_batches_to_1e5(split, tiny_llama_dir: Path):
    from llmrec.lm.hf import HFCausalLM

    lm = HFCausalLM(tiny_llama_dir)
    hist = split.train.history()
    users = np.arange(6)
    cands = np.tile(np.arange(4), (6, 1)) + 3 * users[:, None]
    one = LikelihoodRanker(lm=lm, batch_size=1).fit(split.train).rank(users, hist, cands)
    calls = lm.stats.calls
    ranker = LikelihoodRanker(lm=lm).fit(split.train)  # auto: 8 users a call on the CPU
    many = ranker.rank(users, hist, cands)
    assert lm.stats.calls == calls + 1 and ranker.stats.lm_calls == 1
    np.testing.assert_allclose(many, one, atol=1e-5)
    assert np.ptp(many) > 0.1


def test_auto_batch_is_todays_on_the_cpu(split) -> None:
    assert VerbaliserRanker(lm=FakeLM()).batch_size == runtime.CPU_BATCH_USERS == 8
    ranker = VerbaliserRanker(lm=FakeLM())
    ranker.runtime = RuntimeOptions(device="cpu")
    assert ranker.batch_size == 8
    assert VerbaliserRanker(lm=FakeLM(), batch_size=5).batch_size == 5


def test_auto_batch_on_a_pretend_gpu(split, monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_gpu(monkeypatch)
    assert VerbaliserRanker(lm=FakeLM()).batch_size == runtime.GPU_BATCH_USERS == 128
    assert RuntimeOptions().batch_users() == 128
    assert RuntimeOptions(device="cpu").batch_users() == 8  # an explicit CPU keeps today's
    assert VerbaliserRanker(lm=FakeLM(), batch_size=5).batch_size == 5
    model = TwoStage(Popularity(), VerbaliserRanker(lm=FakeLM()), runtime={"device": "auto"})
    assert model.lm_batch_size() == 128


@pytest.mark.parametrize(("gpu", "chunk"), [(False, 8), (True, 128)])
def test_evaluation_hands_a_two_stage_one_lm_batch_at_a_time(
    gpu: bool, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if gpu:
        _pretend_gpu(monkeypatch)
    data = leave_one_out(tiny_dataset(n_users=300))
    lm = CountingLM()
    model = TwoStage(Popularity(), VerbaliserRanker(lm=lm), n_candidates=5).fit(data.train)
    asked: list[int] = []
    rank = model.ranker.rank
    monkeypatch.setattr(
        model.ranker, "rank", lambda u, *a, **k: asked.append(len(u)) or rank(u, *a, **k)
    )
    evaluate(model, data, ks=(5,))
    n = len(data.test.active_users())
    assert sum(asked) == n and max(asked) == min(chunk, n)
    assert max(lm.batches) == min(chunk, n)


def test_stage_keys_ignore_the_ranker_batch_size() -> None:
    from llmrec.compare.config import CompareEntry
    from llmrec.compare.runner import _identity

    def entry(**ranker: object) -> CompareEntry:
        params = {"retriever": "popularity", "ranker": {"kind": "verbaliser", **ranker}}
        return CompareEntry(name="r", paradigm="direct", model="two_stage", params=params)

    assert (
        _identity(entry(batch_size=64)) == _identity(entry()) == _identity(entry(batch_size="auto"))
    )
    assert _identity(entry(calibrate=True)) != _identity(entry())


@pytest.mark.parametrize("bad", ["big", 0, True, -3])
def test_a_bad_batch_size_is_one_line_naming_both_choices(bad: object) -> None:
    from llmrec.errors import ConfigError
    from llmrec.models.registry import create_model

    with pytest.raises(ConfigError) as err:
        create_model("two_stage", {"ranker": {"kind": "verbaliser", "batch_size": bad}})
    assert "\n" not in str(err.value)
    assert "batch_size" in str(err.value) and "whole number >= 1 or 'auto'" in str(err.value)
