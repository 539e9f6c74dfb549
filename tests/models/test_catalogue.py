"""The model catalogue: a model added with one file and one ``register_model`` line is known to
``llmrec run``, ``llmrec compare`` and ``llmrec serve``, with the paradigm its spec gives."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmrec.cli import main
from llmrec.errors import ConfigError
from llmrec.models import Recommender
from llmrec.models.catalogue import (
    BUILTIN,
    ModelSpec,
    PipelineLevel,
    find_spec,
    load_plugins,
    register_model,
    unregister_model,
)
from llmrec.testing import tiny_dataset

#: the whole of a new model: one file
TOY_MODULE = '''
from typing import Self

import numpy as np

from llmrec.models.base import Recommender


class Toy(Recommender):
    """Scores every item by its training popularity."""

    name = "toy"

    def fit(self, train, valid=None) -> Self:
        self._remember_catalogue(train)
        return self

    def score(self, users, history) -> np.ndarray:
        assert self._popularity is not None
        return np.tile(self._popularity, (len(users), 1)).astype(np.float32)
'''


#: a third-party package's whole declaration: no llmrec import (the class's module has one)
PLUGIN_MODULE = (
    """TOY = {"target": "toy_recommender:Toy", "paradigm": "embeddings", "rough_s": 1}"""
)


def install_fake_distribution(
    folder: Path, entry_points: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``pip install`` leaves for a package declaring ``entry_points``: a dist-info
    folder that :mod:`importlib.metadata` finds on ``sys.path`` (and no stale plugin module
    from an earlier test in ``sys.modules``)."""
    monkeypatch.delitem(sys.modules, "toy_llmrec_plugin", raising=False)
    monkeypatch.syspath_prepend(str(folder))
    info = folder / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture(params=["register_model", "entry_point"])
def toy(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModelSpec]:
    """``toy_recommender.Toy`` in a temporary module, registered as an embeddings model: by
    the one catalogue line, or as an installed package's ``llmrec.models`` entry point."""
    (tmp_path / "toy_recommender.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    if request.param == "register_model":
        register_model(ModelSpec("toy", "toy_recommender:Toy", "embeddings", rough_s=1))
    else:
        (tmp_path / "toy_llmrec_plugin.py").write_text(PLUGIN_MODULE)
        install_fake_distribution(
            tmp_path, "[llmrec.models]\ntoy = toy_llmrec_plugin:TOY\n", monkeypatch
        )
        assert load_plugins() == ["toy"]
    spec = find_spec("toy")
    assert spec is not None
    yield spec
    unregister_model("toy")


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    data = tiny_dataset()
    lines = ["user_id,item_id,timestamp"]
    for u, i, t in zip(data.users, data.items, data.timestamps, strict=True):
        lines.append(f"{data.user_ids[u]},{data.item_ids[i]},{t}")
    path = tmp_path / "inter.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_registered_toy_model_runs_compares_and_serves(
    toy: ModelSpec, csv_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmrec.serve.service import Service, config_from_folder

    assert toy.pipeline is PipelineLevel.NEW_INDEX  # the paradigm's level by default
    runs = tmp_path / "runs"
    store = ["--store", str(tmp_path / "store.sqlite")]
    args = ["--dataset", str(csv_path), "--out", str(runs), *store]
    assert main(["run", "--model", "toy", "--json", *args]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "toy"
    run_dir = runs / record["run_id"]

    config = tmp_path / "compare.yaml"
    config.write_text(
        f"dataset: {csv_path}\neval: {{n_negatives: 9}}\n"
        "probes: {sample_users: 5, latency_users: 2, probe_users: 4, slots: [0, 5]}\n"
        "entries:\n  - {name: toy, model: toy}\n"  # no paradigm: the catalogue's
    )
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--out", str(out), "--json", *store]) == 0
    manifest = json.loads((out / "compare.json").read_text())
    (stage,) = manifest["stages"]
    assert (stage["status"], stage["paradigm"], stage["pipeline"]) == (
        "done",
        "embeddings",
        "new index",
    )

    for folder in (run_dir, out):
        service = Service.load(config_from_folder(folder), data=tiny_dataset())
        (served,) = service.models.values()
        assert served.describe()["paradigm"] == "embeddings"
        assert service.entry("embeddings") is served


def test_a_saved_toy_folder_loads_only_while_registered(toy: ModelSpec, tmp_path: Path) -> None:
    from llmrec.models import create_model

    saved = create_model("toy").fit(tiny_dataset()).save(tmp_path / "toy")
    assert Recommender.load(saved).name == "toy"
    unregister_model("toy")
    with pytest.raises(ConfigError, match="not a registered model"):
        Recommender.load(saved)


def test_a_saved_folder_never_imports_a_path_it_names(tmp_path: Path) -> None:
    saved = create_saved_popularity(tmp_path)
    meta = json.loads((saved / "config.json").read_text())
    meta["model"] = "os:system"
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="not a registered model"):
        Recommender.load(saved)


def create_saved_popularity(tmp_path: Path) -> Path:
    from llmrec.models import create_model

    return create_model("popularity").fit(tiny_dataset()).save(tmp_path / "pop")


def test_specs_are_checked_and_names_are_not_silently_replaced() -> None:
    with pytest.raises(ConfigError, match="paradigm"):
        ModelSpec("x", "a.b:C", _unchecked("vibes"))
    with pytest.raises(ConfigError, match="module:Class"):
        ModelSpec("x", "not a target", "classic")
    with pytest.raises(ConfigError, match="already registered"):
        register_model(ModelSpec("sasrec", "a.b:C", "direct"))
    assert find_spec("sasrec") == next(s for s in BUILTIN if s.name == "sasrec")


def test_pipeline_levels_are_ordered_and_parse_both_spellings() -> None:
    assert PipelineLevel.NOTHING_NEW < PipelineLevel.OFFLINE_JOB < PipelineLevel.SERVING_MODEL
    assert PipelineLevel.parse("new index") is PipelineLevel.parse("index")
    assert PipelineLevel.parse("vibes") is None


def _unchecked(value: Any) -> Any:
    return value


@pytest.mark.parametrize(
    ("declared", "why"),
    [
        ("TOY = 3", "declares a int, not a ModelSpec"),
        ('TOY = {"target": "toy_recommender:Toy", "paradigm": "films"}', "paradigm 'films'"),
        ('TOY = {"target": "toy_recommender:Toy", "paradigm": "classic", "flavour": 1}', "spec"),
        ('TOY = {"name": "other", "target": "m:C", "paradigm": "classic"}', "names the model"),
        ('raise ImportError("no numpy here")', "no numpy here"),
    ],
)
def test_a_broken_plugin_is_skipped_with_one_warning(
    declared: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "toy_llmrec_plugin.py").write_text(declared)
    install_fake_distribution(
        tmp_path, "[llmrec.models]\ntoy = toy_llmrec_plugin:TOY\n", monkeypatch
    )
    with pytest.warns(RuntimeWarning, match=f"model plugin 'toy' .*skipped: .*{why}"):
        assert load_plugins() == []
    assert find_spec("toy") is None


def test_a_plugin_cannot_take_a_builtin_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "toy_llmrec_plugin.py").write_text(PLUGIN_MODULE)
    install_fake_distribution(
        tmp_path, "[llmrec.models]\nsasrec = toy_llmrec_plugin:TOY\n", monkeypatch
    )
    with pytest.warns(RuntimeWarning, match="'sasrec' .*skipped: the name is taken by llmrec"):
        assert load_plugins() == []
    assert find_spec("sasrec") in BUILTIN
