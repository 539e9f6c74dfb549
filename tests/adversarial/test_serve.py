"""A hostile client against ``llmrec serve`` and damaged folders given to it.

* HTTP (in-process test client, so each case takes milliseconds): every answer is RFC 8259
  JSON; a bad body is a 422 in FastAPI's list format (``type``, ``loc``, ``msg``), any other
  refusal ``{"detail": "one line"}`` with the documented status — never a 500.
* CLI: a bad flag or a damaged run/compare folder is one ``llmrec: error:`` line naming the
  flag or the folder and what is wrong; the server never starts and the folder is left as it
  was (serving writes nothing).
* Two stages on tiny catalogues: the LM ranks whatever candidates there are, and says when it
  ranked nobody.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import Dataset
from llmrec.models.registry import create_model
from llmrec.testing import tiny_dataset
from tests.adversarial.conftest import assert_finite_tree, assert_one_line_error, strict_json

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DIRECT = {
    "retriever": "itemknn",
    "n_candidates": 10,
    "ranker": {"kind": "verbaliser", "lm": "fake"},
}


# --- fixtures: a tiny service, saved run folders -----------------------------------------------
@pytest.fixture(scope="module")
def data() -> Dataset:
    return tiny_dataset()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, data: Dataset) -> dict[str, Path]:
    """Saved models: ``pop``, ``knn`` and ``direct`` (item-kNN + a verbaliser on the fake LM)."""
    root = tmp_path_factory.mktemp("saved")
    models = {"pop": ("popularity", {}), "knn": ("itemknn", {}), "direct": ("two_stage", DIRECT)}
    return {
        name: create_model(model, params).fit(data).save(root / name)
        for name, (model, params) in models.items()
    }


@pytest.fixture(scope="module")
def client(saved: dict[str, Path], data: Dataset) -> Iterator[Any]:
    with _serving(saved, data) as test_client:
        yield test_client


@contextmanager
def _serving(saved: dict[str, Path], data: Dataset, **overrides: Any) -> Iterator[Any]:
    """A test client over ``saved`` that shows a 500 as a real client would see it (no
    exception raised in the test)."""
    from fastapi.testclient import TestClient

    from llmrec.serve import load_service
    from llmrec.serve.app import create_app
    from llmrec.serve.config import validate_serve_config

    paradigms = {"pop": "classic", "knn": "classic", "direct": "direct"}
    config = validate_serve_config(
        {
            "dataset": data.name,
            "entries": [
                {"name": name, "paradigm": paradigms[name], "path": str(path)}
                for name, path in saved.items()
            ],
            **overrides,
        }
    )
    service = load_service(config, data=data)
    with TestClient(create_app(service), raise_server_exceptions=False) as test_client:
        test_client.service = service  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI case must fail before the server starts: starting it fails the test."""
    import uvicorn

    def refuse(*_args: object, **_kwargs: object) -> None:
        pytest.fail("the server started although its input was damaged")

    monkeypatch.setattr(uvicorn, "run", refuse)


def _post(client: Any, body: bytes | str, path: str = "/v1/recommend", **headers: str) -> Any:
    content = body.encode() if isinstance(body, str) else body
    return client.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )


def _refused(response: Any, status: int, *fragments: str) -> object:
    """The documented error format: a 422 is FastAPI's list of ``{type, loc, msg}``; any
    other status ``{"detail": "one line"}``. The body is strict JSON; ``fragments`` appear in
    it."""
    assert response.status_code == status, response.text
    detail = strict_json(response.text)["detail"]  # type: ignore[index]
    if status == 422:
        assert isinstance(detail, list) and detail
        assert all({"type", "loc", "msg"} <= set(err) for err in detail), detail
    else:
        assert isinstance(detail, str) and "\n" not in detail
    text = json.dumps(detail)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text}"
    return detail


# --- non-finite numbers, in each field, refused where the body is parsed ---------------------
@pytest.mark.parametrize(
    "body",
    [
        '{"user_id": NaN}',
        '{"user_id": "u1", "k": Infinity}',
        '{"user_id": "u1", "k": 1e999}',
        '{"history": ["i1", -Infinity]}',
        '{"history": ["i1", 1e400]}',
        '{"user_id": "u1", "profile": {"age": NaN}}',
        '{"user_id": "u1", "exclude_seen": NaN}',
        '{"user_id": -Infinity, "paradigm": "direct"}',
    ],
)
def test_non_finite_numbers_are_422_in_any_field(client: Any, body: str) -> None:
    err = _refused(_post(client, body), 422, "json_invalid")
    assert "finite" in json.dumps(err) or "RFC 8259" in json.dumps(err)


def test_non_finite_shifts_of_a_position_bias_request_are_422(client: Any) -> None:
    body = '{"user_id": "u1", "paradigm": "direct", "shifts": NaN}'
    _refused(_post(client, body, "/v1/position-bias"), 422, "json_invalid")


# --- numbers of the wrong size or type ---------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 2**70}, "user_id"),
        ({"history": [2**70]}, "history"),
        ({"user_id": "u1", "k": -3}, "k"),
        ({"user_id": "u1", "k": 2**70}, "k"),
        ({"user_id": "u1", "k": "5"}, "k"),
        ({"user_id": "u1", "k": True}, "k"),
        ({"user_id": "u1", "k": 2.5}, "k"),
        ({"user_id": True}, "user_id"),
        ({"user_id": "u1", "exclude_seen": "no"}, "exclude_seen"),
    ],
)
def test_out_of_range_and_mistyped_numbers_are_422_naming_the_field(
    client: Any, body: dict[str, Any], field: str
) -> None:
    _refused(client.post("/v1/recommend", json=body), 422, f'"{field}"')


def test_an_integer_of_thousands_of_digits_is_422(client: Any) -> None:
    _refused(_post(client, '{"user_id": ' + "7" * 5000 + "}"), 422, "json_invalid", "digits")


def test_k_as_an_integral_float_is_the_integer(client: Any) -> None:
    r = _post(client, '{"user_id": "u1", "k": 3.0}')
    assert r.status_code == 200 and len(strict_json(r.text)["items"]) == 3  # type: ignore[index]


# --- bodies that are not one JSON object of known fields --------------------------------------
@pytest.mark.parametrize(("body", "needle"), [("[]", "body"), ('"u1"', "body"), ("null", "body")])
def test_a_body_that_is_not_an_object_is_422(client: Any, body: str, needle: str) -> None:
    _refused(_post(client, body), 422, needle)


def test_nested_garbage_in_a_field_is_422(client: Any) -> None:
    body = {"user_id": {"$gt": ""}, "history": [[["i1"]]], "profile": {"a": {"b": 1}}}
    _refused(client.post("/v1/recommend", json=body), 422, "user_id", "history", "profile")


def test_nesting_deeper_than_the_parser_follows_is_422(client: Any) -> None:
    _refused(_post(client, "[" * 20_000 + "]" * 20_000), 422, "json_invalid", "nested")


def test_a_repeated_key_is_422_not_last_wins(client: Any) -> None:
    _refused(_post(client, '{"user_id": "u1", "user_id": "u2"}'), 422, "json_invalid", "twice")


def test_a_body_that_is_not_utf8_is_422(client: Any) -> None:
    _refused(_post(client, b'{"user_id": "\xff\xfe"}'), 422, "json_invalid", "UTF-8")


def test_a_body_of_another_content_type_is_422_even_when_not_utf8(client: Any) -> None:
    r = _post(client, b"\xff\xfe user_id=u1", **{"content-type": "text/plain"})
    _refused(r, 422, "body")


def test_an_empty_body_is_422(client: Any) -> None:
    _refused(_post(client, b""), 422, "body")


def test_an_unknown_paradigm_is_404_listing_what_is_served(client: Any) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u1", "paradigm": "../../etc/passwd"})
    _refused(r, 404, "unknown paradigm or model", "pop", "direct")


# --- histories ------------------------------------------------------------------------------------
def test_a_history_with_an_unknown_item_is_404_naming_it(client: Any) -> None:
    r = client.post("/v1/recommend", json={"history": ["i1", "no-such-item"]})
    _refused(r, 404, "no-such-item")


def test_a_history_of_repeated_items_is_answered_without_them(client: Any) -> None:
    r = client.post("/v1/recommend", json={"history": ["i1"] * 50, "paradigm": "direct"})
    assert r.status_code == 200
    body = strict_json(r.text)
    ids = [item["id"] for item in body["items"]]  # type: ignore[index]
    assert "i1" not in ids and len(ids) == len(set(ids)) == 10
    assert_finite_tree(body)


def test_a_history_of_a_million_items_is_refused_before_parsing(client: Any) -> None:
    r = _post(client, json.dumps({"history": ["i1"] * 1_000_000}))
    _refused(r, 413, "bytes")


def test_a_history_over_max_history_is_422(saved: dict[str, Path], data: Dataset) -> None:
    with _serving(saved, data, max_body_bytes=10_000_000) as big:
        r = big.post("/v1/recommend", json={"history": ["i1"] * 1001})
        _refused(r, 422, "history")


# --- position bias on too few candidates ---------------------------------------------------------
@pytest.mark.parametrize("seen", [30, 29])
def test_position_bias_with_fewer_than_two_candidates_is_409(client: Any, seen: int) -> None:
    body = {"history": [f"i{i}" for i in range(seen)], "paradigm": "direct"}
    _refused(client.post("/v1/position-bias", json=body), 409, "at least 2")


def test_position_bias_shows_each_rotation_once_when_candidates_are_few(client: Any) -> None:
    body = {"history": [f"i{i}" for i in range(27)], "paradigm": "direct", "shifts": 8}
    r = client.post("/v1/position-bias", json=body)
    assert r.status_code == 200
    shifts = strict_json(r.text)["shifts"]  # type: ignore[index]
    assert [s["offset"] for s in shifts] == [0, 1, 2]


# --- what the service writes is RFC 8259 JSON, whatever a model scores ------------------------
def test_non_finite_model_scores_never_reach_a_response(
    saved: dict[str, Path], data: Dataset
) -> None:
    with _serving(saved, data) as c:
        model = c.service.entry("pop").model
        real = model.score

        def broken(users: np.ndarray, history: Any) -> np.ndarray:
            scores = real(users, history).copy()
            scores[:, ::3] = np.nan
            scores[:, 1::3] = np.inf
            return scores

        model.score = broken
        for path in ("/v1/recommend", "/v1/paradigms", "/healthz", "/v1/users/u1", "/v1/items"):
            r = c.post(path, json={"user_id": "u1"}) if path == "/v1/recommend" else c.get(path)
            assert r.status_code == 200, (path, r.text)
            assert_finite_tree(strict_json(r.text))


# --- serve flags and config values out of range --------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-queue", "0"),
        ("--max-batch", "-1"),
        ("--window-ms", "nan"),
        ("--lm-budget-ms", "inf"),
        ("--lm-budget-ms", "0"),
        ("--port", "70000"),
    ],
)
def test_a_serve_flag_out_of_range_is_one_line_naming_it(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path, flag: str,
    value: str,
) -> None:  # fmt: skip
    run = _run_folder(tmp_path, saved["knn"])
    assert_one_line_error(cli("serve", str(run), flag, value), f"{flag} {value}")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("batching: {max_queue: 0}", "batching.max_queue"),
        ("batching: {max_batch_fast: -1}", "batching.max_batch_fast"),
        ("lm_budget_ms: .nan", "lm_budget_ms"),
        ("breaker_cooldown_ms: .inf", "breaker_cooldown_ms"),
        ("max_k: 1e999", "max_k"),
    ],
)
def test_a_serve_config_value_out_of_range_is_one_line_naming_file_and_key(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path, line: str,
    key: str,
) -> None:  # fmt: skip
    config = tmp_path / "serve.yaml"
    entries = f"entries: [{{name: knn, paradigm: classic, path: {saved['knn']}}}]"
    config.write_text(f"dataset: tiny\n{entries}\n{line}\n")
    assert_one_line_error(cli("serve", "--config", str(config)), str(config), key)


def test_a_serve_config_entry_whose_folder_is_missing_is_one_line(
    cli: Callable[..., Any], no_server: None, tmp_path: Path
) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("dataset: tiny\nentries: [{name: gone, paradigm: classic, path: gone}]\n")
    assert_one_line_error(cli("serve", "--config", str(config)), "cannot serve gone", "gone")


def test_a_serve_config_that_is_a_folder_is_one_line(
    cli: Callable[..., Any], no_server: None, tmp_path: Path
) -> None:
    assert_one_line_error(cli("serve", "--config", str(tmp_path)), str(tmp_path), "folder")


# --- damaged run and compare folders -------------------------------------------------------------
def _run_folder(tmp_path: Path, model: Path, record: object = None) -> Path:
    run = tmp_path / "run"
    shutil.copytree(model, run / "model")
    record = record or {"model": "itemknn", "dataset": "tiny", "config": {"dataset": "tiny"}}
    (run / "record.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _damaged(cli: Callable[..., Any], folder: Path, *fragments: str) -> None:
    """``llmrec serve FOLDER`` is one error line naming ``fragments``; the folder is untouched."""
    before = _snapshot(folder)
    assert_one_line_error(cli("serve", str(folder)), *fragments)
    assert _snapshot(folder) == before


@pytest.mark.parametrize(
    ("record", "fragments"),
    [
        ('{"model": "itemknn", "dataset": ', ("record.json", "not valid JSON")),
        ('["itemknn"]', ("record.json", "JSON object")),
        ({"dataset": "tiny"}, ("record.json", "model")),
        ({"model": "itemknn", "dataset": "tiny", "config": {"dataset": 7}}, ("record.json",)),
        ({"model": "../../x", "dataset": "tiny"}, ("entries.0.name",)),
    ],
)
def test_a_damaged_record_is_one_line_naming_it(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path,
    record: object, fragments: tuple[str, ...],
) -> None:  # fmt: skip
    _damaged(cli, _run_folder(tmp_path, saved["knn"], record), *fragments)


def test_a_record_that_is_not_utf8_is_one_line(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    run = _run_folder(tmp_path, saved["knn"])
    (run / "record.json").write_bytes(b'{"model": "\xff"}')
    _damaged(cli, run, "record.json", "UTF-8")


def test_a_malformed_model_config_json_is_one_line_naming_it(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    run = _run_folder(tmp_path, saved["knn"])
    (run / "model" / "config.json").write_text('{"model": "itemknn", "config": {')
    _damaged(cli, run, "cannot serve itemknn", "config.json")


def test_a_truncated_safetensors_file_is_one_line_naming_it(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    run = _run_folder(tmp_path, saved["knn"])
    state = run / "model" / "state.safetensors"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    _damaged(cli, run, "cannot serve itemknn", "state.safetensors")


def test_a_config_json_whose_n_items_lies_is_one_line(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    run = _run_folder(tmp_path, saved["knn"])
    path = run / "model" / "config.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "n_items": meta["n_items"] + 7}))
    _damaged(cli, run, "cannot serve itemknn", str(run / "model"))


def test_a_run_folder_without_its_model_is_one_line(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    run = _run_folder(tmp_path, saved["knn"])
    shutil.rmtree(run / "model")
    _damaged(cli, run, str(run), "holds no saved model")


def test_damaged_two_stage_texts_are_one_line_naming_the_entry(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    record = {"model": "two_stage", "dataset": "tiny"}
    run = _run_folder(tmp_path, saved["direct"], record)
    (run / "model" / "texts.json").write_text('{"texts": [1')
    _damaged(cli, run, "cannot serve two_stage", "texts.json")


def _compare_folder(tmp_path: Path, saved: dict[str, Path], stages: list[dict[str, Any]]) -> Path:
    folder = tmp_path / "compare"
    for name in ("pop", "knn"):
        shutil.copytree(saved[name], folder / "stages" / name / "model")
    manifest = {"config": {"dataset": "tiny"}, "stages": stages}
    (folder / "compare.json").write_text(json.dumps(manifest))
    return folder


def _stage(name: str, **fields: str) -> dict[str, str]:
    return {"name": name, "paradigm": "classic", "status": "done", "protocol": "full", **fields}


def test_a_manifest_stage_pointing_outside_the_folder_is_one_line(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    outside = tmp_path / "outside" / "model"
    shutil.copytree(saved["knn"], outside)
    folder = _compare_folder(tmp_path, saved, [_stage("../../outside"), _stage("knn")])
    _damaged(cli, folder, "compare.json", "stages.0.name")


def test_a_manifest_whose_stages_are_all_missing_is_one_line(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    folder = _compare_folder(tmp_path, saved, [_stage("gone"), _stage("also-gone")])
    _damaged(cli, folder, str(folder), "holds no saved models")


def test_only_naming_a_missing_stage_is_one_line(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    folder = _compare_folder(tmp_path, saved, [_stage("pop"), _stage("gone")])
    assert_one_line_error(cli("serve", str(folder), "--only", "gone"), "--only", "gone")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('{"stages": {"pop": 1}}', "stages"),
        ('{"stages": [{"name": "pop", "paradigm": "vibes", "status": "done", "protocol": "full"}]}',
         "stages.0.paradigm"),
    ],
)  # fmt: skip
def test_a_damaged_manifest_is_one_line_naming_it(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path, text: str,
    fragment: str,
) -> None:  # fmt: skip
    folder = _compare_folder(tmp_path, saved, [])
    (folder / "compare.json").write_text(text)
    _damaged(cli, folder, "compare.json", fragment)


def test_a_recorded_dataset_that_cannot_be_loaded_is_one_line(
    cli: Callable[..., Any], no_server: None, saved: dict[str, Path], tmp_path: Path
) -> None:
    record = {"model": "itemknn", "dataset": str(tmp_path / "gone.csv")}
    _damaged(cli, _run_folder(tmp_path, saved["knn"], record), "gone.csv")


# --- two stages on tiny catalogues -------------------------------------------------------------
def _small(n_items: int, histories: list[list[int]]) -> Dataset:
    users = [u for u, row in enumerate(histories) for _ in row]
    return Dataset(
        user_ids=np.array([f"u{u}" for u in range(len(histories))], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        users=np.array(users),
        items=np.array([i for row in histories for i in row]),
        timestamps=np.arange(len(users)),
        item_text=pd.DataFrame({"title": [f"Movie {i}" for i in range(n_items)]}),
        name="small",
    )


def _direct(data: Dataset, tmp_path: Path, n_candidates: int) -> dict[str, Path]:
    params = {**DIRECT, "retriever": "popularity", "n_candidates": n_candidates}
    return {"direct": create_model("two_stage", params).fit(data).save(tmp_path / "direct")}


def test_a_catalogue_the_candidates_cover_is_still_ranked_by_the_lm(tmp_path: Path) -> None:
    """20 items and n_candidates=20: the LM used to be skipped for every user, and the
    retriever's answer served (and recorded) as the LM's."""
    data = _small(20, [[u % 20, (u + 3) % 20, (u + 7) % 20] for u in range(6)])
    with _serving(_direct(data, tmp_path, 20), data) as c:
        r = c.post("/v1/recommend", json={"user_id": "u1", "k": 5})
        assert r.status_code == 200 and strict_json(r.text)["degraded"] is False  # type: ignore[index]
        assert c.service.entry("direct").model.diagnostics()["lm_ranked"] == 1
        assert 'llmrec_lm_calls_total{entry="direct"} 1.0' in c.get("/metrics").text


def test_a_user_with_one_unseen_item_gets_it_and_is_counted(tmp_path: Path) -> None:
    data = _small(3, [[0, 1], [1, 2], [0]])
    with _serving(_direct(data, tmp_path, 20), data) as c:
        r = c.post("/v1/recommend", json={"user_id": "u0", "k": 5})
        assert r.status_code == 200
        assert [i["id"] for i in strict_json(r.text)["items"]] == ["i2"]  # type: ignore[index]
        diagnostics = c.service.entry("direct").model.diagnostics()
        assert diagnostics["few_candidates"] == 1 and diagnostics["lm_ranked_none"] == 1
