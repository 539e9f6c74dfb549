"""Serve configs from folders: a run folder (``llmrec run``) or a compare folder
(``llmrec compare``, read through :mod:`llmrec.compare.folder`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmrec._io import read_json_object
from llmrec.compare.folder import MANIFEST_FILE, MODEL_DIR, read_manifest, stage_dir
from llmrec.config import validated
from llmrec.errors import ConfigError
from llmrec.models.catalogue import find_spec
from llmrec.models.saved import CONFIG_FILE
from llmrec.results import RECORD_FILE
from llmrec.serve.config import ServeConfig, load_serve_config

__all__ = ["config_from_folder"]


class _Record(BaseModel):
    """What serving reads of a run folder's ``record.json``."""

    model_config = ConfigDict(extra="ignore")

    model: str
    dataset: str


def config_from_folder(folder: Path, **overrides: Any) -> ServeConfig:
    """A :class:`ServeConfig` serving what a run folder or a compare folder holds.

    * a run folder (``llmrec run``): ``record.json`` and ``model/``;
    * a compare folder (``llmrec compare``): every finished stage with a saved model, except
      candidate-protocol stages (the same models as their full-ranking entries).

    A damaged ``record.json`` or ``compare.json`` is a one-line :class:`ConfigError` naming it.
    """
    folder = Path(folder)
    if (folder / MANIFEST_FILE).is_file():
        raw = _compare_entries(folder)
    elif (folder / RECORD_FILE).is_file():
        raw = _run_entry(folder, folder / RECORD_FILE)
    else:
        raise ConfigError(
            f"{folder} is neither a run folder ({RECORD_FILE}) nor a compare folder "
            f"({MANIFEST_FILE})"
        )
    return load_serve_config(raw, **overrides)


def _compare_entries(folder: Path) -> dict[str, Any]:
    manifest = read_manifest(folder)
    entries = []
    for stage in manifest.stages:
        model_dir = stage_dir(folder, stage.name) / MODEL_DIR
        finished = stage.finished and (model_dir / CONFIG_FILE).is_file()
        if finished and stage.protocol != "candidates":
            entries.append({"name": stage.name, "paradigm": stage.paradigm, "path": model_dir})
    if not entries:
        raise ConfigError(
            f"{folder} holds no saved models (run llmrec compare again with this version)"
        )
    return {"dataset": manifest.dataset_source, "entries": entries}


def _run_entry(folder: Path, path: Path) -> dict[str, Any]:
    raw = read_json_object(path, "run record")
    config = raw.get("config")
    if isinstance(config, dict) and "dataset" in config:
        raw = {**raw, "dataset": config["dataset"]}
    record = validated(_Record, raw, f"invalid run record {path}")
    model_dir = folder / "model"
    if not (model_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{folder} holds no saved model (the run had save_model: false)")
    spec = find_spec(record.model)
    entry = {
        "name": record.model,
        "paradigm": spec.paradigm if spec is not None else None,
        "path": model_dir,
    }
    return {"dataset": record.dataset, "entries": [entry]}
