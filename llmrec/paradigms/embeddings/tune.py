"""Contrastive tuning of a sentence encoder on behaviour: the config, the training pairs, and
the tuned weights as a folder.

The pairs come from the training split given to ``fit`` and nothing else, so no validation or
test item is ever a training text:

* ``co-interaction`` — (an item's text, the text of an item the same user took up to
  ``window`` steps later): item vectors of items taken together move together, which is what
  text-kNN's item-to-item cosine reads;
* ``next-item`` — (the texts of the user's last ``history_items`` items, newest first, the next
  item's text): a history text moves toward what followed it, which is what the user-text tower
  reads.

An item with no training interaction is never a pair's text; it is still encoded by the tuned
encoder, so it keeps its text-only path to the user. Training itself is
:func:`llmrec.paradigms.embeddings.tune_train.tune_encoder` (sentence-transformers' trainer with
``MultipleNegativesRankingLoss``: the other positives of a batch are the negatives; with
``loss: symmetric`` the other anchors are a positive's negatives too).

Example::

    cfg = EncoderTuneConfig(pairs="co-interaction", max_pairs=4096)
    pairs = training_pairs(train, item_texts, cfg, seed=0)   # anchors[i] -> positives[i]
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmrec._io import atomic_write_text, dumps_json, read_json_object, staged_dir
from llmrec.config import StrictConfig
from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError

__all__ = [
    "ENCODER_DIR",
    "TUNING_FILE",
    "EncoderTuneConfig",
    "EncoderTuneReport",
    "TrainingPairs",
    "TunedEncoder",
    "load_tuned",
    "restore_tuned",
    "save_tuned",
    "training_pairs",
    "tuning_diagnostics",
]

#: the folder of a saved model that holds its tuned encoder
ENCODER_DIR = "encoder"
#: the file inside a tuned encoder's folder that says what it is and what tuning cost
TUNING_FILE = "tuning.json"
#: the module types a tuned folder may name in modules.json (a file must not choose imports)
_ST_MODULES = ("sentence_transformers.",)


class EncoderTuneConfig(StrictConfig):
    """How the encoder is tuned on the training split (``tune:`` in a text model's config).

    Attributes:
        pairs: ``co-interaction`` or ``next-item`` (see the module docstring).
        window: co-interaction pairs join items at most this many steps apart in a history.
        history_items: items in a next-item pair's history text.
        max_pairs: pairs drawn (seeded, without replacement) from all the split offers;
            ``None`` takes all. The main cost knob: time grows linearly with it.
        epochs: passes over the drawn pairs.
        batch_size: pairs per step; each pair's positive is a negative for the others.
        lr: peak learning rate (AdamW, linear decay after ``warmup``).
        warmup: fraction of the steps that warm the learning rate up.
        max_seq_length: token budget per text while training.
        loss: ``mnrl`` (sentence-transformers' ``MultipleNegativesRankingLoss``: each anchor
            picks its positive among the batch's positives) or ``symmetric`` (the same both
            ways: each positive also picks its anchor among the anchors — twice the signal per
            encoded text for the symmetric item-to-item relation text-kNN reads; not yet shown
            better on MiniLM, see docs/transfer.md).
        seed: seed of the pair draw and the trainer; ``None`` is the model's ``seed``.
    """

    pairs: Literal["co-interaction", "next-item"] = "co-interaction"
    window: int = Field(default=1, ge=1)
    history_items: int = Field(default=5, ge=1)
    max_pairs: int | None = Field(default=4096, ge=1)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=64, ge=2)
    lr: float = Field(default=1e-4, gt=0, le=1)
    warmup: float = Field(default=0.1, ge=0, lt=1)
    max_seq_length: int = Field(default=64, ge=4)
    loss: Literal["mnrl", "symmetric"] = "mnrl"
    seed: int | None = Field(default=None, ge=0)


@dataclass(frozen=True)
class TrainingPairs:
    """Anchor and positive texts, aligned.

    Attributes:
        anchors, positives: ``anchors[i]`` should encode near ``positives[i]``.
        items: ``(n,)`` int64 item index of each positive.
        n_available: pairs the split offered before ``max_pairs`` drew from them.
    """

    anchors: list[str]
    positives: list[str]
    items: np.ndarray
    n_available: int


def training_pairs(
    train: Dataset, texts: list[str], cfg: EncoderTuneConfig, seed: int
) -> TrainingPairs:
    """The pairs ``cfg`` asks for, read from ``train``'s histories (time order) only;
    ``texts[i]`` is item ``i``'s text."""
    hist = train.history()
    anchor_seqs: list[tuple[int, ...]] = []
    targets: list[int] = []
    for u in range(hist.n_users):
        seq = hist.items[hist.indptr[u] : hist.indptr[u + 1]].tolist()
        for t in range(1, len(seq)):
            if cfg.pairs == "next-item":
                anchor_seqs.append(tuple(reversed(seq[max(0, t - cfg.history_items) : t])))
                targets.append(seq[t])
                continue
            for s in range(max(0, t - cfg.window), t):
                anchor_seqs.append((seq[s],))
                targets.append(seq[t])
    n = len(targets)
    pick = np.arange(n)
    if cfg.max_pairs is not None and n > cfg.max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(n, cfg.max_pairs, replace=False))
    return TrainingPairs(
        anchors=["; ".join(texts[i] for i in anchor_seqs[j]) for j in pick],
        positives=[texts[targets[j]] for j in pick],
        items=np.asarray([targets[j] for j in pick], dtype=np.int64),
        n_available=n,
    )


def data_digest(train: Dataset, texts: list[str]) -> str:
    """sha256 of what tuning reads: the training histories (items and times) and item texts."""
    hist = train.history()
    digest = hashlib.sha256()
    for arr in (hist.indptr, hist.items, hist.timestamps):
        digest.update(np.ascontiguousarray(arr).tobytes())
    digest.update("\x00".join(texts).encode())
    return digest.hexdigest()


@dataclass
class EncoderTuneReport:
    """What tuning cost (read beside the gain it bought).

    Attributes:
        pairs: pairs drawn; ``pairs_available``: pairs the split offered.
        steps: optimiser steps; ``examples_seen``: pairs trained on (``pairs * epochs``).
        tokens_seen: real (unpadded, cut to ``max_seq_length``) tokens of those pairs' texts.
        seconds: wall time of training; ``cpu_seconds``: process CPU time (all threads).
        final_loss: mean training loss over the run.
        weights_bytes: size of the tuned folder on disk.
        device: where it trained.
        cached: 1 when this fit read weights an earlier fit had tuned (the cost above is that
            fit's).
    """

    pairs: int = 0
    pairs_available: int = 0
    steps: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    final_loss: float = 0.0
    weights_bytes: int = 0
    device: str = "cpu"
    cached: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderTuneReport:
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"{TUNING_FILE}: report: {exc}") from None


@dataclass
class TunedEncoder:
    """A tuned sentence-transformers folder, its identity and its cost.

    Attributes:
        folder: the sentence-transformers folder (``modules.json``, ``model.safetensors``, ...).
        key: sha256 of the base encoder, tuning config, seed and training data.
        report: what tuning cost.
    """

    folder: Path
    key: str
    report: EncoderTuneReport

    @property
    def spec(self) -> str:
        """The LM spec that loads it (``st:FOLDER``)."""
        return f"st:{self.folder}"

    @property
    def model_id(self) -> str:
        """The disk-cache identity of its encodings: never a zero-shot encoder's."""
        return f"st:tuned-{self.key[:24]}"

    def write_meta(self) -> None:
        """``tuning.json`` into :attr:`folder`."""
        meta = {"key": self.key, "report": self.report.as_dict()}
        atomic_write_text(self.folder / TUNING_FILE, dumps_json(meta))

    def save(self, target: Path) -> None:
        """Copy the folder to ``target`` (whole or not at all)."""
        with staged_dir(target) as partial:
            shutil.copytree(self.folder, partial, dirs_exist_ok=True)


def load_tuned(folder: Path) -> TunedEncoder:
    """The tuned encoder a folder holds, checked without loading the weights: ``tuning.json``
    readable, weights as safetensors only, and ``modules.json`` naming only
    sentence-transformers' own module types; anything else is a :class:`ConfigError`."""
    if not (folder / TUNING_FILE).is_file():
        raise ConfigError(f"{folder}: {TUNING_FILE} is missing (saved incompletely?)")
    meta = read_json_object(folder / TUNING_FILE, "tuned encoder")
    key, report = meta.get("key"), meta.get("report")
    if not isinstance(key, str) or not isinstance(report, dict):
        raise ConfigError(f"{folder}/{TUNING_FILE}: needs a 'key' string and a 'report' object")
    if not (folder / "model.safetensors").is_file():
        raise ConfigError(f"{folder}: model.safetensors is missing")
    if any(folder.rglob("*.bin")) or any(folder.rglob("*.pt")) or any(folder.rglob("*.pkl")):
        raise ConfigError(f"{folder}: holds pickled weights; only safetensors are read")
    _check_modules(folder)
    return TunedEncoder(folder, key, EncoderTuneReport.from_dict(report))


def _check_modules(folder: Path) -> None:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}/modules.json: {exc}") from None
    ok = isinstance(modules, list) and all(
        isinstance(m, dict) and str(m.get("type", "")).startswith(_ST_MODULES) for m in modules
    )
    if not ok:
        raise ConfigError(f"{folder}/modules.json: may name sentence-transformers modules only")


def save_tuned(tuned: TunedEncoder | None, folder: Path) -> None:
    """A model's tuned encoder into ``folder/encoder`` (nothing for a zero-shot model)."""
    if tuned is not None:
        tuned.save(folder / ENCODER_DIR)


def restore_tuned(folder: Path, tune: EncoderTuneConfig | None) -> TunedEncoder | None:
    """The tuned encoder a saved model's folder holds when its config tunes (checked, weights
    not loaded yet); ``None`` for a zero-shot config."""
    if tune is None:
        return None
    if not (folder / ENCODER_DIR).is_dir():
        raise ConfigError(f"{ENCODER_DIR}/ is missing (saved incompletely?)")
    return load_tuned(folder / ENCODER_DIR)


def tuning_diagnostics(tuned: TunedEncoder | None) -> dict[str, Any]:
    """``{"tuning": cost}`` for a model with a tuned encoder, else nothing."""
    return {} if tuned is None else {"tuning": tuned.report.as_dict()}
