"""`llmrec run` and `llmrec results` end to end on a small CSV, in-process."""

import json

import pytest

from llmrec.cli import main
from llmrec.testing import tiny_dataset


@pytest.fixture
def csv_path(tmp_path):
    data = tiny_dataset()
    path = tmp_path / "inter.csv"
    lines = ["user_id,item_id,timestamp"]
    for u, i, t in zip(data.users, data.items, data.timestamps, strict=True):
        lines.append(f"{data.user_ids[u]},{data.item_ids[i]},{t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_writes_record_and_store_then_results_lists_it(csv_path, tmp_path, capsys):
    store = tmp_path / "store.sqlite"
    args = ["--dataset", str(csv_path), "--out", str(tmp_path / "runs"), "--store", str(store)]
    assert main(["run", "--model", "itemknn", "--set", "params.neighbors=5", "--json", *args]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "itemknn"
    assert record["config"]["params"]["neighbors"] == 5
    assert 0.0 <= record["metrics"]["ndcg@10"] <= 1.0
    assert "cold_items_n_users" in record["metrics"]
    assert record["extra"]["violations"]["seen_items"] == 0
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1
    assert (run_dirs[0] / "record.json").is_file()
    assert (run_dirs[0] / "model" / "state.safetensors").is_file()

    assert main(["results", "--store", str(store), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in listed] == [record["run_id"]]
    assert main(["results", "--store", str(store)]) == 0
    assert "itemknn" in capsys.readouterr().out


def test_same_seed_gives_same_metrics(csv_path, tmp_path, capsys):
    common = ["run", "--model", "bpr", "--dataset", str(csv_path), "--json"]
    common += ["--set", "params.epochs=3", "--store", str(tmp_path / "s.sqlite")]
    main([*common, "--out", str(tmp_path / "a")])
    first = json.loads(capsys.readouterr().out)["metrics"]
    main([*common, "--out", str(tmp_path / "b")])
    second = json.loads(capsys.readouterr().out)["metrics"]
    assert first == second


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--model", "nosuch"], "unknown model 'nosuch'"),
        (["run", "--model", "itemknn", "--set", "params.bogus=1"], "bogus"),
        (["run", "--model", "itemknn", "--set", "oops"], "KEY=VALUE"),
        (["run", "--config", "/nonexistent.yaml"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_error(argv, message, csv_path, tmp_path, capsys):
    extra = ["--dataset", str(csv_path), "--out", str(tmp_path), "--store", str(tmp_path / "s")]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmrec: error:") and message in err
    assert "\n" not in err


def test_template_values_need_no_quoting():
    from llmrec.cli.run_cmd import _parse_value

    assert _parse_value("{title} ({year})") == "{title} ({year})"
    assert _parse_value("5") == 5
    assert _parse_value("[10, 20]") == [10, 20]


def test_cuda_without_a_gpu_is_one_line(csv_path, tmp_path, capsys, monkeypatch):
    from llmrec import runtime

    monkeypatch.setattr(runtime, "_cuda", lambda: (False, 0))
    args = ["--dataset", str(csv_path), "--out", str(tmp_path / "runs"), "--device", "cuda"]
    assert main(["run", "--model", "sasrec", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("llmrec: error: device 'cuda' asked for")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_runtime_flags_reach_the_run_config_but_not_the_model_config(csv_path, tmp_path, capsys):
    args = ["--dataset", str(csv_path), "--out", str(tmp_path / "runs"), "--json"]
    flags = ["--threads", "1", "--device", "cpu", "--set", "params.epochs=1"]
    assert main(["run", "--model", "bpr", *args, *flags]) == 0
    record = json.loads(capsys.readouterr().out)
    assert "threads" not in record["config"]["params"]
