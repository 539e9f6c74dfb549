"""Issue 16's device plumbing, checked on a machine without a GPU: models asked for ``cuda``
stop with one line; a model saved on one device loads onto the device its runtime names (the
``meta`` device stands in for a GPU: tensors without data, so only placement is checked);
saving moves every tensor to the CPU first, as a GPU-trained model needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmrec import runtime as rt
from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from llmrec.models.bpr import BPR
from llmrec.models.sasrec import SASRec
from llmrec.paradigms.tokens.generative import GenerativeRetrieval
from llmrec.testing import tiny_dataset

torch = pytest.importorskip("torch")

SASREC = {"dim": 8, "n_heads": 1, "inner_dim": 16, "max_len": 6, "epochs": 2}
TIGER = {"encoder": "fake:16", "levels": 2, "codebook_size": 4, "dim": 16, "heads": 2,
         "layers": 1, "max_items": 5, "epochs": 1}  # fmt: skip
MAKERS = {
    "sasrec": lambda runtime: SASRec(SASREC, runtime=runtime),
    "bpr": lambda runtime: BPR(dim=8, epochs=2, runtime=runtime),
    "tiger": lambda runtime: GenerativeRetrieval(TIGER, runtime=runtime),
}


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rt, "_cuda", lambda: (False, 0))


def _net(model: Recommender) -> Any:
    return model.net if isinstance(model, SASRec) else model._net  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_fitting_on_cuda_without_a_gpu_is_one_line(name: str, no_gpu: None) -> None:
    with pytest.raises(ConfigError, match="device 'cuda' asked for, but torch sees no") as info:
        MAKERS[name]({"device": "cuda"}).fit(tiny_dataset())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["sasrec", "tiger"])
def test_loading_onto_cuda_without_a_gpu_is_one_line(
    name: str, tmp_path: Path, no_gpu: None
) -> None:
    MAKERS[name]({"device": "cpu"}).fit(tiny_dataset()).save(tmp_path / "m")
    with pytest.raises(ConfigError, match="sees no CUDA GPU") as info:
        Recommender.load(tmp_path / "m", runtime={"device": "cuda"})
    assert "\n" not in str(info.value)


def test_bpr_loaded_for_cuda_without_a_gpu_stops_when_it_scores(
    tmp_path: Path, no_gpu: None
) -> None:
    BPR(dim=8, epochs=2, runtime={"device": "cpu"}).fit(tiny_dataset()).save(tmp_path / "m")
    model = Recommender.load(tmp_path / "m", runtime={"device": "cuda"})  # numpy factors
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        model.recommend([0, 1], 5)


@pytest.mark.parametrize("name", ["sasrec", "tiger"])
def test_a_cpu_saved_model_loads_onto_the_runtimes_device(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    MAKERS[name]({"device": "cpu"}).fit(tiny_dataset()).save(tmp_path / "m")
    # "cuda" resolves to the meta device: where the loaded weights go, without a GPU
    resolve = rt.resolve_device
    monkeypatch.setattr(rt, "resolve_device", lambda d: "meta" if d == "cuda" else resolve(d))
    loaded = Recommender.load(tmp_path / "m", runtime={"device": "cuda"})
    devices = {p.device.type for p in _net(loaded).state_dict().values()}
    assert devices == {"meta"}
    back = Recommender.load(tmp_path / "m", runtime={"device": "cpu"})
    assert {p.device.type for p in _net(back).state_dict().values()} == {"cpu"}


@pytest.mark.parametrize("name", ["sasrec", "tiger"])
def test_saving_moves_every_tensor_to_the_cpu_first(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = MAKERS[name]({"device": "cpu"}).fit(tiny_dataset())
    state = _net(model).state_dict()
    moved: list[int] = []
    to_cpu = torch.Tensor.cpu

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        moved.append(id(self))
        return to_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counted)
    model.save(tmp_path / "m")
    assert len(moved) >= len(state)
    monkeypatch.undo()
    users = np.arange(model.n_users)
    loaded = Recommender.load(tmp_path / "m", runtime={"device": "cpu"})
    np.testing.assert_array_equal(loaded.recommend(users, 5).items, model.recommend(users, 5).items)
