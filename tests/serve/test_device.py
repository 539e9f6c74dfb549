"""The service on a device: ``batching.max_batch`` follows it (``auto``, the default, is
today's 8 on the CPU and the rankers' GPU batch, 128, on a GPU; a number given wins on both),
and ``--device cuda`` without a GPU stops ``llmrec serve`` in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmrec import runtime as rt
from llmrec.errors import ConfigError
from llmrec.runtime import CPU_BATCH_USERS, GPU_BATCH_USERS, RuntimeOptions
from llmrec.serve.config import BatchingConfig, validate_serve_config


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """``gpu(True)``: torch "sees" one GPU from now on; ``gpu(False)``: none."""

    def set_gpu(present: bool) -> None:
        monkeypatch.setattr(rt, "_cuda", lambda: (present, int(present)))

    return set_gpu


def test_auto_without_a_gpu_keeps_the_cpu_batch(gpu: Callable[[bool], None]) -> None:
    gpu(False)
    assert BatchingConfig().max_batch == "auto"
    assert BatchingConfig().lm_batch(RuntimeOptions()) == CPU_BATCH_USERS == 8
    assert BatchingConfig().lm_batch(RuntimeOptions(device="cpu")) == 8


def test_auto_on_a_gpu_takes_the_gpu_batch(gpu: Callable[[bool], None]) -> None:
    gpu(True)
    assert BatchingConfig().lm_batch(RuntimeOptions()) == GPU_BATCH_USERS == 128
    assert BatchingConfig().lm_batch(RuntimeOptions(device="cuda:0")) == 128
    # an explicit CPU on a machine with a GPU keeps the CPU batch
    assert BatchingConfig().lm_batch(RuntimeOptions(device="cpu")) == 8


@pytest.mark.parametrize("present", [False, True])
def test_an_explicit_max_batch_wins(gpu: Callable[[bool], None], present: bool) -> None:
    gpu(present)
    for given in (1, 16, "24"):
        assert BatchingConfig(max_batch=given).lm_batch(RuntimeOptions()) == int(given)


@pytest.mark.parametrize("bad", [0, -3, 257, "many", 2.5, True])
def test_bad_max_batch_is_a_one_line_error(bad: Any, serve_raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"batching\.max_batch") as info:
        validate_serve_config({**serve_raw, "batching": {"max_batch": bad}})
    assert "\n" not in str(info.value)


CASES = [(False, None, 8), (True, None, 128), (True, 16, 16), (False, 16, 16)]


@pytest.mark.parametrize(("present", "given", "want"), CASES)
def test_the_lm_entrys_batcher_gets_the_resolved_size(
    make_service: Callable[..., Any],
    gpu: Callable[[bool], None],
    present: bool,
    given: int | None,
    want: int,
) -> None:
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from llmrec.serve.app import create_app

    batching: dict[str, Any] = {"window_ms": 30, "max_queue": 64}
    if given is not None:
        batching["max_batch"] = given
    service = make_service(batching=batching)  # the models load on the CPU
    gpu(present)  # the batchers are sized when the app starts
    with TestClient(create_app(service)) as client:
        batchers = client.app.state.runtime.batchers
        assert batchers["lm-rerank"]._max_batch == want
        assert batchers["knn"]._max_batch == 64  # max_batch_fast, whatever the device


def test_serve_on_cuda_without_a_gpu_is_one_line(
    tmp_path: Path,
    model_dirs: dict[str, Path],
    gpu: Callable[[bool], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from llmrec.cli import main

    gpu(False)
    config = tmp_path / "serve.yaml"
    config.write_text(f"dataset: tiny\nentries:\n  - {{name: pop, path: {model_dirs['pop']}}}\n")
    assert main(["serve", "--config", str(config), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # a status line, then the error
    assert err[-1].startswith("llmrec: error: device 'cuda' asked for")
    assert [line for line in err if line.startswith("llmrec: error")] == err[-1:]
    assert "Traceback" not in "\n".join(err)
