"""The service core without HTTP: id resolution, batched answers, profiles, fallbacks, folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError, UnknownIdError
from llmrec.serve import CannotServe, config_from_folder


def _items(answer: Any) -> list[int]:
    return [int(i) for i in answer.items]


def test_a_known_user_brings_their_stored_history(
    make_service: Callable[..., Any], serve_data: Dataset
) -> None:
    service = make_service()
    user_id = serve_data.user_ids[3]
    query = service.query(user_id=user_id, k=5)
    assert query.user == 3
    np.testing.assert_array_equal(query.history, serve_data.history().of(3))
    assert query.profile is None  # the stored profile applies
    given = service.query(user_id=user_id, history=[serve_data.item_ids[0]], profile={"a": 1})
    np.testing.assert_array_equal(given.history, [0])
    assert given.profile == {"a": "1"}


def test_unknown_ids_name_the_id(make_service: Callable[..., Any]) -> None:
    service = make_service()
    with pytest.raises(UnknownIdError, match="nobody"):
        service.query(user_id="nobody")
    with pytest.raises(UnknownIdError, match="no-such-item"):
        service.query(history=["no-such-item"])
    with pytest.raises(UnknownIdError, match="served: pop"):
        service.entry("nope")
    with pytest.raises(ConfigError, match="user_id or history"):
        service.query()


def test_entries_are_found_by_name_or_paradigm(make_service: Callable[..., Any]) -> None:
    service = make_service()
    assert service.entry(None).name == "pop"
    assert service.entry("direct").name == "lm-rerank"
    assert service.entry("embeddings").name == "text-knn"
    assert service.entry("bpr").name == "bpr"


@pytest.mark.parametrize("name", ["pop", "knn", "bpr", "text-knn", "lm-rerank"])
def test_one_batched_call_answers_as_single_calls_do(
    make_service: Callable[..., Any], serve_data: Dataset, name: str
) -> None:
    service = make_service()
    served = service.entry(name)
    queries = [
        service.query(user_id=serve_data.user_ids[u], k=k, exclude_seen=ex)
        for u, k, ex in [(0, 5, True), (1, 3, True), (2, 7, False), (5, 5, True)]
    ]
    together = served.answer(queries, service.history)
    alone = [served.answer([q], service.history)[0] for q in queries]
    for q, a, b in zip(queries, together, alone, strict=True):
        assert len(a.items) == q.k
        assert _items(a) == _items(b)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
        assert a.batch_size == 4 and b.batch_size == 1
        if q.exclude_seen:
            assert not set(_items(a)) & set(q.history.tolist())


@pytest.mark.parametrize("name", ["knn", "text-knn", "lm-rerank"])
def test_a_new_user_with_a_history_is_served_like_a_known_one(
    make_service: Callable[..., Any], serve_data: Dataset, name: str
) -> None:
    service = make_service()
    served = service.entry(name)
    known = service.query(user_id=serve_data.user_ids[4], k=5)
    stranger = service.query(
        history=[serve_data.item_ids[i] for i in known.history], profile=None, k=5
    )
    # the stranger has no stored profile; give the direct ranker the same one to compare
    if served.model.reads_profiles:
        stranger = service.query(
            history=[serve_data.item_ids[i] for i in known.history],
            profile=dict(served.model.ranker.builder.profiles[4]),
            k=5,
        )
    a, b = served.answer([known, stranger], service.history)
    assert _items(a) == _items(b)


def test_an_id_model_refuses_a_user_it_never_saw(
    make_service: Callable[..., Any], serve_data: Dataset
) -> None:
    service = make_service()
    served = service.entry("bpr")
    with pytest.raises(CannotServe, match="cannot serve a user it was not trained on"):
        served.check(service.query(history=[serve_data.item_ids[0]]))
    served.check(service.query(user_id=serve_data.user_ids[0]))  # a known user is fine


def test_each_row_of_a_batch_gets_its_own_profile(
    make_service: Callable[..., Any], serve_data: Dataset
) -> None:
    ranker = make_service().entry("lm-rerank").model.ranker
    hist = serve_data.history()
    cands = np.arange(5)
    stored = ranker.builder.profiles[0]
    assert stored, "tiny data gives users a profile"
    shown: list[str] = []
    score_next_batch = ranker.lm.score_next_batch

    def recording(prompts: list[str], labels: Any) -> Any:
        shown.extend(prompts)
        return score_next_batch(prompts, labels)

    ranker.lm.score_next_batch = recording
    rows = UserHistory.from_rows([hist.of(0)] * 3, serve_data.n_items)
    profiles = [{"occupation": "astronaut"}, 0, {}]
    ranker.rank(np.arange(3), rows, np.tile(cands, (3, 1)), profiles=profiles)
    first, second, third = shown
    assert "occupation: astronaut" in first
    assert all(f"{k}: {v}" in second for k, v in stored.items())
    assert "User profile" not in third
    # the next query without profiles shows the stored ones
    ranker.rank(np.array([0]), hist, cands[None, :])
    assert "astronaut" not in shown[-1]


def test_fallback_is_the_retrievers_ranking_marked_degraded(
    make_service: Callable[..., Any], serve_data: Dataset
) -> None:
    service = make_service()
    served = service.entry("lm-rerank")
    assert served.can_degrade and not service.entry("knn").can_degrade
    queries = [service.query(user_id=serve_data.user_ids[u], k=6) for u in (0, 1)]
    degraded = served.fallback(queries, service.history, "LM backend failed: down")
    plain = service.entry("knn").answer(queries, service.history)
    for d, p in zip(degraded, plain, strict=True):
        assert d.degraded and d.reason == "LM backend failed: down"
        assert _items(d) == _items(p)
    with pytest.raises(CannotServe):
        service.entry("knn").fallback(queries, service.history, "x")


def test_a_history_from_rows_keeps_each_rows_order() -> None:
    hist = UserHistory.from_rows([np.array([3, 1]), np.array([], dtype=np.int64), np.array([2])], 5)
    assert hist.n_users == 3
    assert [hist.of(u).tolist() for u in range(3)] == [[3, 1], [], [2]]
    assert hist.lengths().tolist() == [2, 0, 1]
    assert hist.timestamps.tolist() == [0, 1, 0]


def test_a_model_trained_on_other_data_is_refused(
    make_service: Callable[..., Any], serve_raw: dict[str, Any]
) -> None:
    from llmrec.serve import load_service
    from llmrec.serve.config import validate_serve_config
    from llmrec.testing import tiny_dataset

    other = tiny_dataset(n_users=12, n_items=20)
    with pytest.raises(ConfigError, match="serve it with the dataset it was trained on"):
        load_service(validate_serve_config(serve_raw), data=other)


def test_config_from_a_run_folder_and_a_compare_folder(
    tmp_path: Path, model_dirs: dict[str, Path]
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model_dirs["knn"], run / "model")
    record = {"model": "itemknn", "dataset": "tiny", "config": {"dataset": "tiny"}}
    (run / "record.json").write_text(json.dumps(record))
    config = config_from_folder(run, port=9001)
    assert [(e.name, e.paradigm) for e in config.entries] == [("itemknn", "classic")]
    assert config.port == 9001 and config.host == "127.0.0.1"

    cmp_ = tmp_path / "cmp"
    stages = [
        ("knn", "classic", "full", "done"),
        ("knn-cand", "classic", "candidates", "done"),
        ("lm-rerank", "direct", "two-stage", "cached"),
        ("broken", "tokens", "full", "failed"),
    ]
    for name, *_ in stages[:3]:
        source = model_dirs["lm-rerank" if name == "lm-rerank" else "knn"]
        shutil.copytree(source, cmp_ / "stages" / name / "model")
    manifest = {
        "config": {"dataset": "tiny"},
        "stages": [
            {"name": n, "paradigm": p, "protocol": pr, "status": s} for n, p, pr, s in stages
        ],
    }
    (cmp_ / "compare.json").write_text(json.dumps(manifest))
    config = config_from_folder(cmp_)
    assert [(e.name, e.paradigm) for e in config.entries] == [
        ("knn", "classic"),
        ("lm-rerank", "direct"),
    ]
    with pytest.raises(ConfigError, match="neither a run folder"):
        config_from_folder(tmp_path)


def test_models_without_an_lm_score_on_the_configured_threads(
    make_service: Callable[..., Any],
) -> None:
    # threads are a runtime option: the service's scoring threads, else its runtime's
    model = make_service(scoring_threads=3).entry("bpr").model
    assert model.runtime.threads == 3 and "threads" not in model.config.model_dump()
    assert make_service(scoring_threads=None).entry("bpr").model.runtime.threads == 2
    runtime = {"threads": 4}
    assert (
        make_service(scoring_threads=None, runtime=runtime).entry("bpr").model.runtime.threads == 4
    )
