"""``llmrec serve`` arguments become a ServeConfig; bad ones give one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmrec.cli import build_parser, main
from llmrec.cli.serve_cmd import build_config
from llmrec.errors import ConfigError


def _run_folder(tmp_path: Path, model_dirs: dict[str, Path]) -> Path:
    run = tmp_path / "run"
    shutil.copytree(model_dirs["knn"], run / "model")
    record = {"model": "itemknn", "dataset": "tiny", "config": {"dataset": "tiny"}}
    (run / "record.json").write_text(json.dumps(record))
    return run


def _args(*argv: str) -> object:
    return build_parser().parse_args(["serve", *argv])


def test_flags_override_the_folder(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    run = _run_folder(tmp_path, model_dirs)
    key = tmp_path / "key"
    key.write_text("abc\n")
    config = build_config(
        _args(
            str(run), "--port", "9009", "--no-batching", "--max-queue", "5",
            "--api-key-file", str(key), "--lm-budget-ms", "250",
        )
    )  # fmt: skip
    assert config.port == 9009 and config.host == "127.0.0.1"
    assert config.batching.enabled is False and config.batching.max_queue == 5
    assert config.api_key == "abc" and config.lm_budget_ms == 250


def test_engine_flags_set_the_runtime(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    """``--engine ray`` and the Ray options land in the runtime the served models load with;
    a bad one is a one-line error naming the flag."""
    run = _run_folder(tmp_path, model_dirs)
    flags = ("--engine", "ray", "--ray-address", "10.0.0.5:6379", "--ray-actors", "3",
             "--ray-actor-gpus", "0.25")  # fmt: skip
    runtime = build_config(_args(str(run), *flags)).runtime
    assert (runtime.engine, runtime.ray_address) == ("ray", "10.0.0.5:6379")
    assert (runtime.ray_actors, runtime.ray_actor_gpus) == (3, 0.25)
    assert build_config(_args(str(run))).runtime.engine == "local"
    with pytest.raises(ConfigError, match=r"^--ray-address nowhere: "):
        build_config(_args(str(run), "--engine", "ray", "--ray-address", "nowhere"))


def test_a_yaml_config_with_relative_paths(tmp_path: Path, model_dirs: dict[str, Path]) -> None:
    shutil.copytree(model_dirs["knn"], tmp_path / "models" / "knn")
    shutil.copytree(model_dirs["pop"], tmp_path / "models" / "pop")
    (tmp_path / "serve.yaml").write_text(
        "dataset: tiny\nentries:\n"
        "  - {name: knn, paradigm: classic, path: models/knn}\n"
        "  - {name: pop, paradigm: classic, path: models/pop}\n"
        "batching: {window_ms: 5}\n"
    )
    config = build_config(_args("--config", str(tmp_path / "serve.yaml"), "--only", "pop"))
    assert [e.name for e in config.entries] == ["pop"]
    assert config.entries[0].path == (tmp_path / "models" / "pop").resolve()
    assert config.batching.window_ms == 5


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ((), "give a run/compare folder or --config FILE"),
        (("{run}", "--only", "nope"), "--only names unknown entries ['nope']"),
        (("{run}", "--api-key-file", "{tmp}/missing"), "cannot read --api-key-file"),
        (("{tmp}",), "neither a run folder"),
        (("{run}", "--port", "70000"), "--port 70000: Input should be less than or equal to"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path,
    model_dirs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    needle: str,
) -> None:
    run = _run_folder(tmp_path, model_dirs)
    filled = [a.format(run=run, tmp=tmp_path) for a in argv]
    assert main(["serve", *filled]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count("\n") == 0
