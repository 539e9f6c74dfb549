"""``llmrec batch`` on the local engine (the reference the Ray engine must match): outputs equal
what the library computes directly, an interrupted job resumes with only its missing parts,
and every hostile input is one line, never a traceback or a folder that looks complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmrec.batch import EncodeJob, RankJob, TagsJob, run_batch
from llmrec.batch.output import MANIFEST, SUCCESS, VOCABULARY
from llmrec.cli import main
from llmrec.data.splits import leave_one_out
from llmrec.data.synthetic import synthetic
from llmrec.errors import BackendError
from llmrec.lm.fake import FakeLM
from llmrec.models.popularity import Popularity
from llmrec.paradigms.direct import TwoStage, make_ranker
from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder
from llmrec.paradigms.tokens.tags import TagConfig, generate_item_tags


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 10)))) for _ in range(n)]


def _items(path: Path, n: int) -> Path:
    rng = np.random.default_rng(1)
    table = pa.table(
        {"item": np.arange(n) * 7 + 3, "title": _texts(n), "year": rng.integers(1950, 2020, n)}
    )
    pq.write_table(table, path)
    return path


def test_encode_matches_the_encoder_part_by_part_and_keeps_ids(tmp_path: Path) -> None:
    src = _items(tmp_path / "items.parquet", 230)
    job = EncodeJob(encoder="fake:8", id_column="item", item_template="{title} ({year})",
                    part_rows=100)  # fmt: skip
    manifest = run_batch(job, src, tmp_path / "out")
    out = pq.read_table(tmp_path / "out")
    assert out.column_names == ["item", "vector"]
    assert out.schema.field("vector").type == pa.list_(pa.float32(), 8)
    assert out.column("item").to_pylist() == (np.arange(230) * 7 + 3).tolist()
    table = pq.read_table(src)
    titles, years = table["title"].to_pylist(), table["year"].to_pylist()
    texts = [f"{t} ({y})" for t, y in zip(titles, years, strict=True)]
    expected, _ = TextEncoder(EncoderConfig(encoder="fake:8", cache=False, chunk_size=100)).encode(
        texts
    )
    vectors = np.stack(out.column("vector").to_numpy(zero_copy_only=False))
    assert np.array_equal(vectors, expected)
    assert manifest["state"] == "complete" and (tmp_path / "out" / SUCCESS).is_file()
    assert manifest["usage"]["calls"] == 3  # one LM call per part
    assert manifest["engine"]["kind"] == "local"
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # fmt: skip


def test_an_interrupted_job_resumes_with_only_the_missing_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _items(tmp_path / "items.parquet", 500)
    job = EncodeJob(encoder="fake:8", id_column="item", text_column="title", part_rows=100)
    reference = run_batch(job, src, tmp_path / "ref")
    sent: list[int] = []
    real = FakeLM.encode

    def failing(self: FakeLM, texts: list[str], **kwargs: object) -> np.ndarray:
        if len(sent) == 2:  # the third part fails mid-job
            raise BackendError("fake: the server went away")
        sent.append(len(texts))
        return real(self, texts, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FakeLM, "encode", failing)
    out = tmp_path / "out"
    with pytest.raises(BackendError):
        run_batch(job, src, out)
    assert not (out / SUCCESS).exists()
    assert json.loads((out / MANIFEST).read_text())["state"] == "running"
    assert len(list(out.glob("part-*.parquet"))) == 2 and not list(out.glob(".*"))

    sent.clear()
    monkeypatch.setattr(
        FakeLM, "encode", lambda self, texts, **kw: _count(sent, real, self, texts, kw)
    )
    resumed = run_batch(job, src, out)
    assert sent == [100, 100, 100]  # the three missing parts, nothing else
    assert resumed["rows_this_run"] == 300 and resumed["usage_this_run"]["calls"] == 3
    assert resumed["usage"] == reference["usage"]  # the kept parts' usage is counted once
    assert pq.read_table(out).equals(pq.read_table(tmp_path / "ref"))

    sent.clear()
    again = run_batch(job, src, out)  # complete: nothing to do
    assert sent == [] and again["rows_this_run"] == 300


def _count(sent: list[int], real, self, texts, kwargs) -> np.ndarray:  # type: ignore[no-untyped-def]
    sent.append(len(texts))
    return real(self, texts, **kwargs)


def test_tags_match_the_tagger_with_the_vocabulary_from_every_part(tmp_path: Path) -> None:
    src = tmp_path / "items.parquet"
    texts = _texts(60)
    pq.write_table(pa.table({"id": [f"i{i}" for i in range(60)], "text": texts}), src)
    cfg = TagConfig(batch_size=4, retries=1, min_count=2, chat=True)
    job = TagsJob(lm="fake", lm_options={"fail_on": "w7"}, tags=cfg, part_rows=20)
    manifest = run_batch(job, src, tmp_path / "out")
    out = pq.read_table(tmp_path / "out")
    assert out.column("id").to_pylist() == [f"i{i}" for i in range(60)]
    parts = [generate_item_tags(FakeLM(fail_on="w7"), texts[i : i + 20], cfg, vocabulary=[])
             for i in range(0, 60, 20)]  # fmt: skip
    parsed = [p for r in parts for p in r.parsed]
    assert out.column("parsed").to_pylist() == parsed
    vocab = json.loads((tmp_path / "out" / VOCABULARY).read_text())
    assert vocab and manifest["vocabulary"] == len(vocab)
    assert manifest["failed"] == sum(len(r.failed) for r in parts) > 0  # some calls fail
    assert manifest["usage"]["backend_errors"] == sum(r.backend_errors for r in parts)
    assert out.column("tags").to_pylist() == [[t for t in p if t in vocab] for p in parsed]


def _saved_two_stage(folder: Path) -> TwoStage:
    split = leave_one_out(synthetic(n_users=60, n_items=40, n_interactions=700))
    ranker = make_ranker({"kind": "verbaliser", "lm": "fake", "batch_size": 4})
    model = TwoStage(Popularity(), ranker, n_candidates=8).fit(split.train)
    model.save(folder)
    return model


def test_rank_gives_the_saved_models_top_k(tmp_path: Path) -> None:
    model = _saved_two_stage(tmp_path / "model")
    users = np.arange(0, 60, 2)
    pq.write_table(pa.table({"user": users}), tmp_path / "users.parquet")
    job = RankJob(model=str(tmp_path / "model"), k=5, part_rows=8)
    manifest = run_batch(job, tmp_path / "users.parquet", tmp_path / "out")
    out = pq.read_table(tmp_path / "out")
    recs = TwoStage.load(tmp_path / "model").recommend(users, 5)
    assert np.array_equal(np.stack(out.column("items").to_numpy(zero_copy_only=False)), recs.items)
    assert np.array_equal(
        np.stack(out.column("scores").to_numpy(zero_copy_only=False)), recs.scores
    )
    assert manifest["usage"]["calls"] > 0  # the ranker's LM calls, counted by the workers
    del model


def test_rank_with_a_dataset_reads_and_writes_its_ids_and_leaves_out_what_users_have(
    tmp_path: Path,
) -> None:
    from llmrec.data import load_dataset

    _saved_two_stage(tmp_path / "model")  # trained on the train split of synthetic:60x40x700
    data = load_dataset("synthetic:60x40x700")
    ids = [str(u) for u in data.user_ids[::3]]  # ids as text: an integer id space still finds them
    pq.write_table(pa.table({"user": ids}), tmp_path / "users.parquet")
    job = RankJob(model=str(tmp_path / "model"), k=5, part_rows=7, dataset="synthetic:60x40x700")
    run_batch(job, tmp_path / "users.parquet", tmp_path / "out")
    out = pq.read_table(tmp_path / "out")
    assert out.column("user").to_pylist() == ids
    users = data.user_index([int(u) for u in ids])
    recs = TwoStage.load(tmp_path / "model").recommend(users, 5, history=data.history())
    got = np.stack(out.column("items").to_numpy(zero_copy_only=False))
    assert np.array_equal(got, data.item_ids[recs.items])  # the dataset's ids, not indices
    history = data.history()
    for row, user in enumerate(users):  # nothing a user has in the dataset (test item included)
        seen = set(data.item_ids[history.of(int(user))].tolist())
        assert not seen & set(got[row].tolist())


def test_rank_with_a_dataset_refuses_unknown_ids_and_another_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _saved_two_stage(tmp_path / "model")
    pq.write_table(pa.table({"user": [1, 2, 9999]}), tmp_path / "users.parquet")
    base = ["rank", "--model", str(tmp_path / "model"), "--input",
            str(tmp_path / "users.parquet"), "--out", str(tmp_path / "o")]  # fmt: skip
    code, err = _cli([*base, "--dataset", "synthetic:60x40x700"], capsys)
    assert code == 2 and err.count("\n") == 1 and "user 9999 is not in synthetic:60x40x700" in err
    code, err = _cli([*base, "--dataset", "synthetic:60x41x700"], capsys)
    assert code == 2 and err.count("\n") == 1 and "trained on 60 users x 40 items" in err
    assert not (tmp_path / "o").exists()


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["batch", *args, "--quiet"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("id,text\n1,a\n"), "not a Parquet file"),
        (lambda p: pq.write_table(pa.table({"id": [1], "title": ["a"]}), p), "no column 'text'"),
        (lambda p: pq.write_table(pa.table({"id": pa.array([], pa.int64()),
                                            "text": pa.array([], pa.string())}), p), "no rows"),
        (lambda p: pq.write_table(pa.table({"id": [1, 2, 1], "text": ["a", "b", "c"]}), p),
         "id 1 appears more than once"),
        (lambda p: None, "the input does not exist"),
    ],
)  # fmt: skip
def test_hostile_inputs_are_one_line_errors_and_write_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    src = tmp_path / "in.parquet"
    make(src)
    code, err = _cli(["encode", "--encoder", "fake", "--input", str(src), "--out",
                      str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and err.startswith("llmrec: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_is_not_this_jobs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _items(tmp_path / "items.parquet", 20)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff")
    args = ["encode", "--encoder", "fake", "--id-column", "item", "--text-column", "title",
            "--input", str(src)]  # fmt: skip
    code, err = _cli([*args, "--out", str(foreign)], capsys)
    assert code == 2 and "is not empty and holds no llmrec batch output" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]

    assert _cli([*args, "--out", str(tmp_path / "out")], capsys)[0] == 0
    code, err = _cli([*args, "--out", str(tmp_path / "out"), "--encoder", "fake:4"], capsys)
    assert code == 2 and "holds the output of another job (its job differ" in err
    code, err = _cli(["rank", "--model", str(tmp_path / "nope"), "--input", str(src),
                      "--out", str(tmp_path / "r")], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "no column 'user'" in err


def test_rank_refuses_users_the_model_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _saved_two_stage(tmp_path / "model")
    pq.write_table(pa.table({"user": [0, 1, 60]}), tmp_path / "users.parquet")
    users = str(tmp_path / "users.parquet")
    args = [
        "rank",
        "--model",
        str(tmp_path / "model"),
        "--input",
        users,
        "--out",
        str(tmp_path / "o"),
    ]
    code, err = _cli(args, capsys)
    assert code == 2 and "user 60 is not in the model (it knows users 0..59)" in err


def test_runtime_options_reach_the_worker_but_not_the_jobs_identity(tmp_path: Path) -> None:
    from llmrec.runtime import RuntimeOptions

    src = _items(tmp_path / "items.parquet", 30)
    job = EncodeJob(encoder="fake", id_column="item", text_column="title", part_rows=10)
    seeded = RuntimeOptions(lm_options={"seed": 3})  # a backend option given at run time
    manifest = run_batch(job, src, tmp_path / "out", runtime=seeded)
    vectors = np.stack(pq.read_table(tmp_path / "out").column("vector").to_numpy(False))
    titles = pq.read_table(src).column("title").to_pylist()
    expected, _ = TextEncoder({"encoder": "fake", "cache": False}, lm=FakeLM(seed=3)).encode(titles)
    assert np.array_equal(vectors, expected)
    assert "runtime" not in json.dumps(manifest["job"])
