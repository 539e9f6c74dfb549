"""The LM rankers' prompt and candidate-count probes, against an oracle ranker whose answer
depends on the prompt's wording, so every figure they report has a value worked out by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from llmrec.compare import CompareConfig, CompareEntry, iter_records, load_compare_config
from llmrec.compare.context import StageContext
from llmrec.compare.validity import run_validity
from llmrec.data.dataset import UserHistory
from llmrec.errors import ConfigError
from llmrec.eval.protocols import truth_for
from llmrec.experiment import EvalOptions, SplitConfig, evaluate_protocol, split_data
from llmrec.lm.fake import FakeLM
from llmrec.models.popularity import Popularity
from llmrec.models.query import QueryProfiles
from llmrec.paradigms.direct import TwoStage, VerbaliserRanker
from llmrec.paradigms.direct.variants import PROMPT_VARIANTS
from llmrec.testing import tiny_dataset

#: the oracle ranks well only under the "plain" paraphrase
MARKER = PROMPT_VARIANTS["plain"].fields("verbaliser")["instruction"]


def g(position: int) -> float:
    """NDCG@10 of one relevant item at a 1-based position."""
    return 1.0 / np.log2(1 + position) if 1 <= position <= 10 else 0.0


class OracleRanker(VerbaliserRanker):
    """Puts each user's held-out item first when the prompt it writes carries ``MARKER``, last
    otherwise; the other candidates keep the order they were given in."""

    held_out: ClassVar[dict[int, int]] = {}

    def rank(
        self,
        users: np.ndarray,
        history: UserHistory,
        candidates: np.ndarray,
        *,
        profiles: QueryProfiles | None = None,
    ) -> np.ndarray:
        users, candidates = np.asarray(users), np.asarray(candidates)
        good = np.array(
            [
                MARKER in self.prompt(int(u), history.of(int(u)), c).score_text
                for u, c in zip(users, candidates, strict=True)
            ]
        )
        held = np.array([self.held_out[int(u)] for u in users])
        given = -np.arange(candidates.shape[1], dtype=np.float32)[None, :]
        top = np.where(good, 100.0, -100.0)[:, None]
        return np.where(candidates == held[:, None], top, given).astype(np.float32)


def _setup(protocol: str, validity: dict[str, Any]) -> tuple[CompareEntry, TwoStage, StageContext]:
    config = CompareConfig.model_validate(
        {
            "dataset": "tiny",
            "seed": 1,
            "eval": {"n_negatives": 9},
            "probes": {"sample_users": 10, "latency_users": 2, "probe_users": 8},
            "validity": {"users": 8, **validity},
        }
    )
    data = tiny_dataset()
    ctx = StageContext(config, data, split_data(data, SplitConfig(), config.seed))
    truth = truth_for(ctx.probe_users, ctx.split.test)
    OracleRanker.held_out = {
        int(u): int(truth.items[truth.indptr[i]]) for i, u in enumerate(ctx.probe_users)
    }
    entry = CompareEntry(name="oracle", paradigm="direct", model="two_stage", protocol=protocol)
    model = TwoStage(Popularity(), OracleRanker(lm=FakeLM()), n_candidates=10)
    return entry, model.fit(ctx.split.train), ctx


def _run(entry: CompareEntry, model: TwoStage, ctx: StageContext) -> dict[str, Any]:
    result = evaluate_protocol(
        model,
        ctx.split,
        EvalOptions(ks=[10, 20], n_negatives=9, sampling="uniform"),
        entry.protocol,
        phase="test",
        seed=ctx.config.seed,
        users=ctx.probe_users,
    )
    extra: dict[str, Any] = {}
    run_validity(entry, model, ctx, result, extra)
    return extra


def test_prompt_probe_under_the_candidate_protocol_reports_each_paraphrase() -> None:
    entry, model, ctx = _setup("candidates", {"probes": ["prompt"]})
    got = _run(entry, model, ctx)["prompt_sensitivity"]
    # 10 candidates: the held-out item last (position 10) unless the prompt is "plain"
    expected = [g(10), 1.0, g(10)]
    assert got["variants"] == ["default", "plain", "terse"]
    assert got["ndcg"] == pytest.approx(expected)
    assert got["mean"] == pytest.approx(np.mean(expected))
    assert got["spread"] == pytest.approx(1.0 - g(10))
    assert got["sd"] == pytest.approx(np.std(expected))
    assert got["n_users"] == 8 and got["candidates"] == 10
    # the paraphrases went to copies of the ranker: the entry's own prompt is unchanged
    assert model.ranker.config.prompt.instruction is None
    assert MARKER not in model.ranker.prompt(0, ctx.hist.of(0), np.arange(3)).score_text


def test_candidate_count_probe_reports_a_random_order_beside_each_count() -> None:
    entry, model, ctx = _setup(
        "candidates", {"probes": ["candidate_count"], "candidate_counts": [5, 10, 30]}
    )
    got = _run(entry, model, ctx)["candidate_count"]
    assert got["counts"] == [5.0, 10.0]  # 30 candidates need more than 26 labels
    assert got["skipped"] == [30.0] and got["limit"] == 26.0
    assert got["ndcg"] == pytest.approx([g(5), g(10)])  # last of n
    assert got["random_ndcg"] == pytest.approx(
        [np.mean([g(p) for p in range(1, 6)]), np.mean([g(p) for p in range(1, 11)])]
    )
    assert got["hit"] == got["random_hit"] == got["recall"] == [1.0, 1.0]


def test_two_stage_probes_rank_the_retrievers_top_n() -> None:
    entry, model, ctx = _setup(
        "two-stage",
        {"probes": ["history", "prompt", "candidate_count"], "candidate_counts": [4, 10]},
    )
    extra = _run(entry, model, ctx)
    users = ctx.probe_users
    held = np.array([OracleRanker.held_out[int(u)] for u in users])
    # where popularity (the retriever) put each held-out item among the unseen ones
    order = Popularity().fit(ctx.split.train).recommend(users, 30, history=ctx.hist).items
    place = np.array(
        [1 + row.tolist().index(h) if h in row else 99 for row, h in zip(order, held, strict=True)]
    )
    prompt = extra["prompt_sensitivity"]
    in_ten = place <= 10
    # "plain": first when among the 10 candidates; otherwise: last of them
    assert prompt["ndcg"][1] == pytest.approx(in_ten.mean())
    assert prompt["ndcg"][0] == pytest.approx(in_ten.mean() * g(10))
    counts = extra["candidate_count"]
    assert counts["recall"] == pytest.approx([(place <= 4).mean(), in_ten.mean()])
    # 4 candidates: the LM puts the held-out item 4th; one beyond them keeps its place
    assert counts["ndcg"][0] == pytest.approx(np.mean([g(4) if p <= 4 else g(p) for p in place]))
    assert counts["random_ndcg"][0] == pytest.approx(
        np.mean([np.mean([g(q) for q in range(1, 5)]) if p <= 4 else g(p) for p in place])
    )
    # the default prompt at the entry's own count is the entry's own list, three ways
    assert counts["ndcg"][1] == pytest.approx(prompt["ndcg"][0])
    assert extra["history_length"]["ndcg"][-1] == pytest.approx(prompt["ndcg"][0])


def test_probes_run_on_lm_entries_only(tiny_compare: Path) -> None:
    records = {r.extra["entry"]["name"]: r for _, r in iter_records(tiny_compare) if r}
    for name, record in records.items():
        lm = record.extra["entry"]["paradigm"] == "direct"
        assert ("prompt_sensitivity" in record.extra) == lm, name
        assert ("candidate_count" in record.extra) == lm, name
    seconds = records["lm-rerank"].extra["validity_s"]
    assert {"prompt", "candidate_count"} <= set(seconds)


@pytest.mark.parametrize(
    ("validity", "needle"),
    [
        ({"prompt_variants": ["default", "nope"]}, "unknown prompt variant(s) nope; variants are"),
        ({"prompt_variants": ["terse", "terse"]}, "two different variants"),
        ({"candidate_counts": [1, 10]}, "2 or more"),
        ({"candidate_counts": []}, "2 or more"),
        ({"probes": ["prompts"]}, "validity.probes.0"),
    ],
)
def test_bad_probe_settings_are_one_line_errors(validity: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_compare_config({"validity": validity})
    message = str(caught.value)
    assert needle in message and "\n" not in message, message
