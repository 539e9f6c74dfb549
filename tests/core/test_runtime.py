"""Runtime options: apart from a model's identity (config.json, stage keys), older configs that
set them still load, and the device is resolved in one place (checked here on the CPU)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from llmrec import runtime as rt
from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from llmrec.models.bpr import BPR
from llmrec.models.sasrec import SASRec
from llmrec.runtime import RuntimeOptions, resolve_device, resolve_dtype, runtime_options
from llmrec.testing import tiny_dataset

SMALL = {"dim": 8, "n_heads": 1, "inner_dim": 16, "max_len": 6, "epochs": 2}


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "_cuda", lambda: (False, 0))


def test_defaults_are_todays_cpu_behaviour(no_gpu: None) -> None:
    opts = RuntimeOptions()
    assert (opts.threads, opts.device, opts.dtype, opts.engine) == (2, "auto", "auto", "local")
    assert opts.torch_device() == "cpu" and opts.torch_dtype_name() == "float32"


def test_bad_values_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="runtime: device: must be auto, cpu, cuda or cuda:N"):
        runtime_options({"device": "gpu"})
    with pytest.raises(ConfigError, match="runtime: threads"):
        runtime_options({"threads": 0})


def test_auto_without_a_gpu_is_the_cpu_and_says_so(no_gpu: None, caplog) -> None:
    rt._log_choice.cache_clear()
    with caplog.at_level(logging.INFO, logger="llmrec.runtime"):
        assert resolve_device("auto") == "cpu"
    assert [r.getMessage() for r in caplog.records] == ["device auto: using cpu"]


def test_cuda_without_a_gpu_is_a_one_line_error(no_gpu: None) -> None:
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="sees no CUDA GPU") as info:
            resolve_device(device)
        assert "\n" not in str(info.value)


def test_a_gpu_index_past_the_last_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "_cuda", lambda: (True, 1))
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ConfigError, match="sees 1 GPU"):
        resolve_device("cuda:1")


def test_dtype_auto_is_bf16_on_a_gpu_fp32_on_the_cpu() -> None:
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    assert resolve_dtype("float16", "cpu") == "float16"


def test_lm_backends_get_device_options_only_off_the_cpu_default(no_gpu: None) -> None:
    assert rt.lm_backend_options(RuntimeOptions(), "hf") == {}
    assert rt.lm_backend_options(RuntimeOptions(dtype="bfloat16"), "hf") == {
        "device": "cpu",
        "dtype": "bfloat16",
    }
    assert rt.lm_backend_options(RuntimeOptions(dtype="bfloat16"), "st") == {"device": "cpu"}
    assert rt.lm_backend_options(RuntimeOptions(dtype="bfloat16"), "fake") == {}


def test_runtime_options_are_not_saved(tmp_path: Path) -> None:
    data = tiny_dataset()
    model = SASRec(SMALL, runtime=RuntimeOptions(threads=1, device="cpu")).fit(data)
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert not set(rt.LEGACY_KEYS) & set(saved["config"])
    assert "runtime" not in saved and "device" not in saved["config"]


def test_old_configs_move_their_threads_to_the_runtime(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="threads in a model config is deprecated"):
        model = SASRec({**SMALL, "threads": 1})
    assert model.runtime.threads == 1 and "threads" not in model.config.model_dump()
    model.fit(tiny_dataset()).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["threads"] = 3  # as a folder saved before runtime options existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.warns(DeprecationWarning):
        loaded = Recommender.load(tmp_path / "m")
    assert loaded.runtime.threads == 3
    with pytest.warns(DeprecationWarning):  # given runtime options win over the old key
        assert Recommender.load(tmp_path / "m", runtime={"threads": 1}).runtime.threads == 1


@pytest.mark.parametrize("make", [lambda: SASRec(SMALL), lambda: BPR(dim=8, epochs=2)])
def test_saved_on_one_device_loads_on_another(make, tmp_path: Path, no_gpu: None) -> None:
    data = tiny_dataset()
    model = make()
    model.runtime = RuntimeOptions(device="cpu")
    model.fit(data).save(tmp_path / "m")
    users = np.arange(data.n_users)
    before = model.score(users, data.history())
    for device in ("cpu", "auto"):
        loaded = Recommender.load(tmp_path / "m", runtime=RuntimeOptions(device=device))
        np.testing.assert_array_equal(loaded.score(users, data.history()), before)


def test_threads_do_not_change_the_numbers() -> None:
    data = tiny_dataset()
    users = np.arange(data.n_users)
    one = SASRec(SMALL, runtime={"threads": 1}).fit(data).score(users, data.history())
    two = SASRec(SMALL, runtime={"threads": 2}).fit(data).score(users, data.history())
    np.testing.assert_allclose(one, two, atol=1e-5)


def test_load_lm_takes_runtime_options_and_a_fake_needs_none(no_gpu: None) -> None:
    from llmrec.lm.registry import backend_of, load_lm

    assert [backend_of(s) for s in ("fake", "fake:8", "minilm-l6", "smollm2-135m")] == [
        "fake",
        "fake",
        "st",
        "gguf",  # a GGUF package run by transformers (HFCausalLM)
    ]
    lm = load_lm("fake:8", runtime=RuntimeOptions(device="cpu", dtype="bfloat16"))
    assert lm.encode(["a"]).shape == (1, 8)


def test_a_two_stage_ranker_loads_its_lm_as_the_model_runs() -> None:
    from llmrec.paradigms.direct.two_stage import TwoStage

    model = TwoStage({"retriever": "popularity"}, runtime={"threads": 1, "device": "cpu"})
    assert model.ranker.runtime is model.runtime and model.retriever.runtime is model.runtime
