"""Hostile input to run folders, saved models, the results store, configs and JSON output.

Each test is one distinct fault: it checks the one-line ``llmrec: error: …`` (or the documented
behaviour) and that nothing half-written remains — no run folder without ``record.json``, no
store row for a run that did not finish, no JSON file a strict parser refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from tests.adversarial.conftest import (
    CliResult,
    assert_finite_tree,
    assert_one_line_error,
    run_cli_subprocess,
    strict_json,
)

DATASET = "synthetic:50x40x800"
Cli = Callable[..., CliResult]


# --- helpers -----------------------------------------------------------------------------------
def run_args(tmp_path: Path, *extra: str, model: str = "popularity") -> list[str]:
    """``llmrec run`` on tiny synthetic data, its folders and store under ``tmp_path``."""
    return [
        "run",
        "--model",
        model,
        "--dataset",
        DATASET,
        "--out",
        str(tmp_path / "runs"),
        "--store",
        str(tmp_path / "store.sqlite"),
        *extra,
    ]


def store_rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with sqlite3.connect(path) as con:
        tables = con.execute("SELECT name FROM sqlite_master WHERE name = 'runs'").fetchall()
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if tables else 0


def assert_nothing_half_written(runs: Path, store: Path | None = None) -> None:
    """Every folder under ``runs`` is a whole run (has ``record.json``); no partial is left."""
    if runs.is_dir():
        for entry in runs.iterdir():
            assert ".partial-" not in entry.name, f"partial folder left: {entry}"
            assert (entry / "record.json").is_file(), f"run folder without a record: {entry}"
    if store is not None:
        assert store_rows(store) == 0


def assert_strict_json_files(folder: Path) -> int:
    """Every ``*.json`` under ``folder`` parses as RFC 8259 JSON; returns how many there are."""
    files = sorted(folder.rglob("*.json"))
    for path in files:
        try:
            assert_finite_tree(strict_json(path.read_text()))
        except ValueError as exc:
            pytest.fail(f"{path} is not strict JSON: {exc}")
    return len(files)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def popularity_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``llmrec run`` folder (popularity on tiny synthetic data)."""
    from llmrec.cli import main

    base = tmp_path_factory.mktemp("popularity-run")
    assert main(run_args(base)) == 0
    (folder,) = (base / "runs").iterdir()
    return folder


@pytest.fixture(scope="module")
def bpr_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved BPR model folder (its arrays have shapes fixed by the config)."""
    from llmrec.data.splits import leave_one_out
    from llmrec.models.bpr import BPR
    from llmrec.testing import tiny_dataset

    split = leave_one_out(tiny_dataset())
    model = BPR(epochs=1, dim=8).fit(split.train, split.valid)
    return model.save(tmp_path_factory.mktemp("bpr") / "model")


@pytest.fixture
def model_copy(popularity_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the popularity run's saved model, free to damage."""
    return Path(shutil.copytree(popularity_run / "model", tmp_path / "model"))


def edit_meta(folder: Path, **changes: Any) -> None:
    meta = json.loads((folder / "config.json").read_text())
    meta.update(changes)
    (folder / "config.json").write_text(json.dumps(meta))


def edit_state(folder: Path, change: Callable[[dict[str, np.ndarray]], object]) -> None:
    from safetensors.numpy import load_file, save_file

    state = load_file(str(folder / "state.safetensors"))
    change(state)
    save_file(state, str(folder / "state.safetensors"))


def load_fails(folder: Path, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        Recommender.load(folder)
    message = str(info.value)
    assert "\n" not in message
    assert str(folder) in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


# --- configs -----------------------------------------------------------------------------------
def test_config_file_not_utf8(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "run.yaml"
    bad.write_bytes(b"model: popularity\ndataset: caf\xe9\n")
    result = cli(*run_args(tmp_path, "--config", str(bad)))
    assert_one_line_error(result, str(bad), "UTF-8")
    assert_nothing_half_written(tmp_path / "runs", tmp_path / "store.sqlite")


def test_config_file_is_a_list(cli: Cli, tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "run.yaml", ["model", "popularity"])
    assert_one_line_error(cli(*run_args(tmp_path, "--config", str(bad))), "mapping")


def test_config_file_is_a_folder(cli: Cli, tmp_path: Path) -> None:
    result = cli(*run_args(tmp_path, "--config", str(tmp_path)))
    assert_one_line_error(result, str(tmp_path), "folder")


def test_config_unknown_key(cli: Cli, tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "run.yaml", {"eval": {"kss": [10]}})
    assert_one_line_error(cli(*run_args(tmp_path, "--config", str(bad))), "eval.kss")


def test_config_wrong_type(cli: Cli, tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "run.yaml", {"eval": {"ks": "ten"}})
    assert_one_line_error(cli(*run_args(tmp_path, "--config", str(bad))), "eval.ks")


def test_set_with_empty_key(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli(*run_args(tmp_path, "--set", "eval.=3")), "--set")


def test_set_into_a_scalar(cli: Cli, tmp_path: Path) -> None:
    result = cli(*run_args(tmp_path, "--set", "seed=1", "--set", "seed.value=2"))
    assert_one_line_error(result, "seed")


@pytest.mark.parametrize("value", ["-1", "0"])
def test_candidates_without_negatives(cli: Cli, tmp_path: Path, value: str) -> None:
    result = cli(
        *run_args(
            tmp_path, "--set", "eval.protocol=candidates", "--set", f"eval.n_negatives={value}"
        )
    )
    assert_one_line_error(result, "eval.n_negatives")
    assert_nothing_half_written(tmp_path / "runs", tmp_path / "store.sqlite")


def test_cutoff_of_a_billion(cli: Cli, tmp_path: Path) -> None:
    result = cli(*run_args(tmp_path, "--set", "eval.ks=[1000000000]"))
    assert_one_line_error(result, "eval.ks", "10,000")


@pytest.mark.parametrize("ks", ["[]", "[0, 10]", "[-5]"])
def test_cutoffs_empty_or_not_positive(cli: Cli, tmp_path: Path, ks: str) -> None:
    assert_one_line_error(cli(*run_args(tmp_path, "--set", f"eval.ks={ks}")), "eval.ks")


def test_cutoff_above_catalogue_is_noted_not_refused(cli: Cli, tmp_path: Path) -> None:
    result = cli(*run_args(tmp_path, "--set", "eval.ks=[10, 100]", "--json"))
    assert result.code == 0, result.err
    assert "exceed the catalogue (40 items)" in result.err
    assert "ndcg@100" in strict_json(result.out)["metrics"]  # type: ignore[index]


def test_negative_seed_with_candidates(cli: Cli, tmp_path: Path) -> None:
    result = cli(*run_args(tmp_path, "--seed", "-1", "--set", "eval.protocol=candidates"))
    assert_one_line_error(result, "seed")
    assert_nothing_half_written(tmp_path / "runs", tmp_path / "store.sqlite")


def test_negative_model_seed(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli(*run_args(tmp_path, "--set", "params.seed=-3")), "seed")


# --- compare configs ---------------------------------------------------------------------------
def tiny_compare_config(**changes: Any) -> dict[str, Any]:
    """Fast entries on tiny synthetic data; the undefined metrics (no cold users, no LM) that
    used to be written as ``NaN`` all occur."""
    raw: dict[str, Any] = {
        "dataset": DATASET,
        "seed": 1,
        "eval": {"n_negatives": 9},
        "probes": {"sample_users": 10, "latency_users": 3, "probe_users": 6, "slots": [0, 9]},
        "entries": [
            {"name": "pop", "paradigm": "classic", "model": "popularity"},
            {"name": "knn", "paradigm": "classic", "model": "itemknn"},
            {
                "name": "knn-cand",
                "paradigm": "classic",
                "model": "itemknn",
                "protocol": "candidates",
            },
            {
                "name": "text-knn",
                "paradigm": "embeddings",
                "model": "textknn",
                "params": {"encoder": "fake:8", "cache": False, "index": {"kind": "hnsw"}},
            },
        ],
    }
    raw.update(changes)
    return raw


def compare_args(tmp_path: Path, config: dict[str, Any], *extra: str) -> list[str]:
    path = write_yaml(tmp_path / "compare.yaml", config)
    out = ["--out", str(tmp_path / "cmp"), "--store", str(tmp_path / "store.sqlite")]
    return ["compare", "--config", str(path), *out, *extra]


def test_compare_fairness_k_not_below_candidates(cli: Cli, tmp_path: Path) -> None:
    config = tiny_compare_config(probes={"fairness_k": 10})
    config["entries"][0]["probes"] = ["fairness"]
    result = cli(*compare_args(tmp_path, config))
    assert_one_line_error(result, "probes.fairness_k", "candidates")
    assert not (tmp_path / "cmp").exists()


def test_compare_negative_seed(cli: Cli, tmp_path: Path) -> None:
    result = cli(*compare_args(tmp_path, tiny_compare_config(), "--seed", "-2"))
    assert_one_line_error(result, "seed")


def test_compare_cutoff_of_a_billion(cli: Cli, tmp_path: Path) -> None:
    config = tiny_compare_config(eval={"ks": [10, 1_000_000_000]})
    assert_one_line_error(cli(*compare_args(tmp_path, config)), "eval", "10,000")


# --- storage -----------------------------------------------------------------------------------
def test_out_under_a_regular_file(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    result = cli(
        *run_args(tmp_path)[:-4],
        "--out",
        str(blocker / "runs"),
        "--store",
        str(tmp_path / "s.sqlite"),
    )
    assert_one_line_error(result, str(blocker))
    assert blocker.read_text() == "not a folder"
    assert store_rows(tmp_path / "s.sqlite") == 0


def test_compare_out_under_a_regular_file(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    args = compare_args(tmp_path, tiny_compare_config())
    args[args.index("--out") + 1] = str(blocker / "cmp")
    assert_one_line_error(cli(*args), str(blocker))


def test_store_is_a_folder(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "store.sqlite"
    folder.mkdir()
    assert_one_line_error(cli(*run_args(tmp_path)), str(folder), "folder")
    assert not (tmp_path / "runs").exists(), "the run went ahead with an unusable store"


def test_store_is_not_sqlite(cli: Cli, tmp_path: Path) -> None:
    garbage = tmp_path / "store.sqlite"
    garbage.write_bytes(b"this is a text file, not a database\n" * 50)
    before = garbage.read_bytes()
    assert_one_line_error(cli(*run_args(tmp_path)), str(garbage), "SQLite")
    assert garbage.read_bytes() == before
    assert not (tmp_path / "runs").exists()


def test_store_is_truncated(cli: Cli, tmp_path: Path, popularity_run: Path) -> None:
    store = tmp_path / "store.sqlite"
    good = popularity_run.parent.parent / "store.sqlite"
    with sqlite3.connect(good) as src, sqlite3.connect(store) as dst:
        src.backup(dst)
    with sqlite3.connect(store) as con:  # grow it past one page, then cut it short
        con.execute("PRAGMA journal_mode=DELETE")
        con.executemany(
            "INSERT INTO runs VALUES (?, '', '', '', '', '{}', ?)",
            [(f"r{i}", "x" * 2000) for i in range(20)],
        )
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    result = cli("results", "--store", str(store))
    assert_one_line_error(result, str(store))


def test_results_of_a_garbage_store(cli: Cli, tmp_path: Path) -> None:
    garbage = tmp_path / "g.sqlite"
    garbage.write_bytes(os.urandom(4096))
    assert_one_line_error(cli("results", "--store", str(garbage), "--json"), str(garbage))


def test_results_store_row_not_a_record(cli: Cli, tmp_path: Path, popularity_run: Path) -> None:
    store = tmp_path / "store.sqlite"
    shutil.copy(popularity_run.parent.parent / "store.sqlite", store)
    with sqlite3.connect(store) as con:
        con.execute("UPDATE runs SET record = '{\"run_id\": 5}'")
    assert_one_line_error(cli("results", "--store", str(store)), str(store), "run_id")


# --- damaged saved models ------------------------------------------------------------------------
def test_saved_config_malformed_json(model_copy: Path) -> None:
    (model_copy / "config.json").write_text('{"model": "popularity", "n_items": ')
    load_fails(model_copy, "not valid JSON")


def test_saved_config_not_utf8(model_copy: Path) -> None:
    (model_copy / "config.json").write_bytes(b'{"model": "popul\xff"}')
    load_fails(model_copy, "UTF-8")


def test_saved_config_names_an_import_path(
    model_copy: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """A file on disk must not choose what is imported: the module is never imported."""
    marker = tmp_path / "imported"
    (tmp_path / "planted_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nclass Model: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    edit_meta(model_copy, model="planted_mod:Model")
    load_fails(model_copy, "not a registered model")
    assert not marker.exists() and "planted_mod" not in sys.modules
    edit_meta(model_copy, model="os:system")
    load_fails(model_copy, "not a registered model")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"n_items": 41}, "base.popularity"),
        ({"n_users": 7}, "base.indptr"),
        ({"n_items": "40"}, "n_items"),
        ({"n_users": -1}, "n_users"),
        ({"config": {"seed": "zero"}}, "seed"),
    ],
    ids=["n_items-lies", "n_users-lies", "n_items-string", "n_users-negative", "bad-config"],
)
def test_saved_config_lies(model_copy: Path, changes: dict[str, Any], fragment: str) -> None:
    edit_meta(model_copy, **changes)
    load_fails(model_copy, fragment)


def test_saved_config_missing_key(model_copy: Path) -> None:
    meta = json.loads((model_copy / "config.json").read_text())
    del meta["n_users"]
    (model_copy / "config.json").write_text(json.dumps(meta))
    load_fails(model_copy, "n_users")


def test_state_truncated(model_copy: Path) -> None:
    state = model_copy / "state.safetensors"
    state.write_bytes(state.read_bytes()[:-40])
    load_fails(model_copy, "state.safetensors")


def test_state_garbage(model_copy: Path) -> None:
    (model_copy / "state.safetensors").write_bytes(os.urandom(300))
    load_fails(model_copy, "state.safetensors")


def test_state_missing(model_copy: Path) -> None:
    (model_copy / "state.safetensors").unlink()
    load_fails(model_copy, "state.safetensors missing")


def test_state_wrong_dtype(model_copy: Path) -> None:
    def to_float(state: dict[str, np.ndarray]) -> None:
        state["base.items"] = state["base.items"].astype(np.float32)

    edit_state(model_copy, to_float)
    load_fails(model_copy, "base.items", "dtype")


def test_state_items_outside_catalogue(model_copy: Path) -> None:
    def poison(state: dict[str, np.ndarray]) -> None:
        state["base.items"][3] = 10_000

    edit_state(model_copy, poison)
    load_fails(model_copy, "base.items", "outside")


def test_state_model_array_wrong_shape(bpr_model: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(bpr_model, tmp_path / "bpr"))

    def shrink(state: dict[str, np.ndarray]) -> None:
        state["model.user_factors"] = state["model.user_factors"][:5]

    edit_state(folder, shrink)
    load_fails(folder, "user_factors", "shape")


def test_state_model_array_missing(bpr_model: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(bpr_model, tmp_path / "bpr"))
    edit_state(folder, lambda state: state.pop("model.item_factors"))
    load_fails(folder, "item_factors")


def test_faiss_index_file_garbage(tmp_path: Path) -> None:
    from llmrec.data.splits import leave_one_out
    from llmrec.paradigms.embeddings.knn import TextKNN
    from llmrec.testing import tiny_dataset

    split = leave_one_out(tiny_dataset())
    model = TextKNN(encoder="fake:8", cache=False, index={"kind": "hnsw", "exact_max": 0})
    folder = model.fit(split.train).save(tmp_path / "textknn")
    (folder / "items.faiss").write_bytes(b"not an index" * 20)
    load_fails(folder, "items.faiss")


def test_folder_of_another_model_through_a_subclass(model_copy: Path) -> None:
    from llmrec.models.bpr import BPR

    with pytest.raises(ConfigError, match="holds a popularity model, not bpr"):
        BPR.load(model_copy)


def test_save_refuses_to_replace_a_foreign_folder(popularity_run: Path, tmp_path: Path) -> None:
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    model = Recommender.load(popularity_run / "model")
    with pytest.raises(ConfigError, match="holds other files"):
        model.save(precious)
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_interrupted_resave_keeps_the_previous_model(
    model_copy: Path, bpr_model: Path, monkeypatch: Any
) -> None:
    import safetensors.numpy

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    bpr = Recommender.load(bpr_model)
    monkeypatch.setattr(safetensors.numpy, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bpr.save(model_copy)
    assert type(Recommender.load(model_copy)).__name__ == "Popularity"
    assert [p.name for p in model_copy.parent.iterdir() if ".partial-" in p.name] == []


def test_serve_refuses_a_damaged_run_folder(
    cli: Cli, popularity_run: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """``llmrec serve RUN_DIR`` loads through Recommender.load: one line, never a server."""
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")

    def never(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a damaged model was served")

    monkeypatch.setattr(uvicorn, "run", never)
    run_dir = Path(shutil.copytree(popularity_run, tmp_path / "run"))
    edit_meta(run_dir / "model", n_items=999)
    result = cli("serve", str(run_dir), "--port", "0")
    assert_one_line_error(result, str(run_dir / "model"))


# --- interrupts ----------------------------------------------------------------------------------
def test_interrupt_while_writing_model_state(cli: Cli, tmp_path: Path, monkeypatch: Any) -> None:
    import safetensors.numpy

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", interrupted)
    result = cli(*run_args(tmp_path))
    assert result.code == 130
    assert list((tmp_path / "runs").iterdir()) == []
    assert store_rows(tmp_path / "store.sqlite") == 0


def test_interrupt_while_writing_record(cli: Cli, tmp_path: Path, monkeypatch: Any) -> None:
    import llmrec.results

    def interrupted(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(llmrec.results, "atomic_write_text", interrupted)
    assert cli(*run_args(tmp_path)).code == 130
    assert list((tmp_path / "runs").iterdir()) == []
    assert store_rows(tmp_path / "store.sqlite") == 0


def test_sigkill_during_save_leaves_no_visible_run(tmp_path: Path) -> None:
    """Killed outright after the state is written: only a hidden partial folder may remain."""
    code = (
        "import os, signal, sys\n"
        "import safetensors.numpy as st\n"
        "real = st.save_file\n"
        "def killer(*a, **k):\n"
        "    real(*a, **k)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "st.save_file = killer\n"
        "from llmrec.cli import main\n"
        f"sys.exit(main({run_args(tmp_path)!r}))\n"
    )
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    visible = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert visible == []
    assert store_rows(tmp_path / "store.sqlite") == 0


def test_interrupted_compare_stage_is_not_mistaken_for_finished(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import llmrec.compare.runner as runner
    from llmrec.compare import load_compare_config, run_compare
    from llmrec.results import ResultsStore

    config = load_compare_config(tiny_compare_config(entries=tiny_compare_config()["entries"][:2]))
    real = runner.write_record
    calls = []

    def interrupt_second(record: Any, folder: Path) -> Path:
        calls.append(folder)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(record, folder)

    monkeypatch.setattr(runner, "write_record", interrupt_second)
    store = ResultsStore(tmp_path / "store.sqlite")
    with pytest.raises(KeyboardInterrupt):
        run_compare(config, tmp_path / "cmp", store=store)
    stages = tmp_path / "cmp" / "stages"
    for stage in stages.iterdir():
        assert ".partial-" not in stage.name
        assert (stage / "record.json").is_file(), f"half-written stage {stage}"
    assert store_rows(tmp_path / "store.sqlite") == 1
    monkeypatch.setattr(runner, "write_record", real)
    statuses = run_compare(config, tmp_path / "cmp", store=store)
    assert [s.status for s in statuses] == ["cached", "done"]


# --- strict JSON everywhere ----------------------------------------------------------------------
def test_run_json_output_and_files_are_strict(cli: Cli, tmp_path: Path) -> None:
    result = cli(*run_args(tmp_path, "--json"))
    assert result.code == 0, result.err
    record = strict_json(result.out)
    assert isinstance(record, dict)
    assert record["metrics"]["cold_users_ndcg@10"] is None  # no cold user: undefined, null
    assert assert_strict_json_files(tmp_path / "runs") == 2  # record.json, model/config.json
    with sqlite3.connect(tmp_path / "store.sqlite") as con:
        for metrics, text in con.execute("SELECT metrics, record FROM runs"):
            strict_json(metrics)
            strict_json(text)


def test_results_json_is_strict(cli: Cli, popularity_run: Path) -> None:
    store = popularity_run.parent.parent / "store.sqlite"
    result = cli("results", "--store", str(store), "--json")
    assert result.code == 0, result.err
    rows = strict_json(result.out)
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert row["metrics"]["cold_users_ndcg@10"] is None
    table = cli("results", "--store", str(store))
    assert table.code == 0 and "None" not in table.out


def test_models_json_is_strict(cli: Cli) -> None:
    result = cli("models", "--json")
    assert result.code == 0, result.err
    strict_json(result.out)


def test_every_json_file_of_a_compare_is_strict(cli: Cli, tmp_path: Path) -> None:
    result = cli(*compare_args(tmp_path, tiny_compare_config(), "--json"))
    assert result.code == 0, result.err
    summary = strict_json(result.out)
    assert isinstance(summary, dict)
    assert [s["status"] for s in summary["stages"]] == ["done"] * 4
    # compare.json, report.json, and per stage record.json + model/config.json (+ index config)
    assert assert_strict_json_files(tmp_path / "cmp") >= 2 + 4 * 2 + 1
    again = cli("report", str(tmp_path / "cmp"), "--json")
    assert again.code == 0, again.err
    strict_json(again.out)


def test_report_of_a_damaged_stage_record(cli: Cli, tmp_path: Path) -> None:
    config = tiny_compare_config(entries=tiny_compare_config()["entries"][:1])
    assert cli(*compare_args(tmp_path, config)).code == 0
    record = tmp_path / "cmp" / "stages" / "pop" / "record.json"
    record.write_text('{"run_id": "x", "metrics": [1, 2]}')
    assert_one_line_error(cli("report", str(tmp_path / "cmp")), str(record))


def test_report_of_a_manifest_with_bad_stages(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / "compare.json").write_text('{"stages": "all of them"}')
    assert_one_line_error(cli("report", str(folder)), "compare.json", "stages")


def test_report_cannot_write_its_file(cli: Cli, tmp_path: Path) -> None:
    """A file-system failure with a path (here report.html is a folder) is one line naming it."""
    config = tiny_compare_config(entries=tiny_compare_config()["entries"][:1])
    assert cli(*compare_args(tmp_path, config)).code == 0
    html = tmp_path / "cmp" / "report.html"
    html.unlink()
    html.mkdir()
    assert_one_line_error(cli("report", str(tmp_path / "cmp")), "report.html")
    assert [p.name for p in html.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_run_record_damaged_on_disk(popularity_run: Path, tmp_path: Path) -> None:
    from llmrec.results import read_record

    run_dir = Path(shutil.copytree(popularity_run, tmp_path / "run"))
    (run_dir / "record.json").write_text('{"run_id": "x", "created": 3}')
    with pytest.raises(ConfigError, match=r"record\.json is not a run record: created"):
        read_record(run_dir)


def test_subprocess_error_has_no_traceback(tmp_path: Path) -> None:
    """The same one-line contract when run as a program (the OSError handler included)."""
    garbage = tmp_path / "store.sqlite"
    garbage.write_bytes(b"\x00" * 100)
    result = run_cli_subprocess(run_args(tmp_path), cwd=tmp_path)
    assert_one_line_error(result, str(garbage))
