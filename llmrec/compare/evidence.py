"""What a stage keeps for the statistics: per-user metric arrays (``per_user.npz``), the
intervals its record carries, and the extra-seed stages of trainable entries.

``per_user.npz`` (``np.savez``; read with ``allow_pickle=False``) holds ``users`` ``(n,)``
int64, one ``(n,)`` float64 array per per-user metric (``ndcg@10``, ...) and the boolean masks
``in_sample``, ``cold_items``, ``cold_users`` aligned with ``users``. A trainable entry run on
several seeds keeps seed ``config.seed`` in its stage folder as before and each further seed
``s`` in ``OUT/seeds/<entry>/seed-<s>/`` (``per_user.npz`` and ``seed.json``), each cached on
its own key, so a compare folder written before seeds existed stays valid.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec._io import atomic_write_text, dumps_json

__all__ = [
    "PER_USER_FILE",
    "SEEDED_MODELS",
    "PerUser",
    "is_seeded",
    "read_per_user",
    "record_intervals",
    "seed_dir",
    "write_per_user",
]

PER_USER_FILE = "per_user.npz"
SEED_FILE = "seed.json"
#: models whose fit depends on the seed (random init, sampled negatives, shuffled batches)
SEEDED_MODELS = frozenset({"bpr", "sasrec", "lm-sasrec", "token-sasrec", "tiger", "user-tower"})
#: the accuracy metrics a record carries an interval for (at the report's cutoff)
INTERVAL_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hr@10")
MASKS = ("in_sample", "cold_items", "cold_users")


@dataclass(frozen=True)
class PerUser:
    """One seed's per-user arrays: ``users`` ``(n,)`` int64, ``metrics`` name -> ``(n,)``
    float64, ``masks`` name -> ``(n,)`` bool (``in_sample``, ``cold_items``, ``cold_users``)."""

    users: np.ndarray
    metrics: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]


def is_seeded(model: str, params: dict[str, Any]) -> bool:
    """Whether an entry's fit depends on its seed (its numbers move from seed to seed): the
    trained models, and any text model whose encoder is tuned with the model's seed."""
    tune = params.get("tune")
    return model in SEEDED_MODELS or (isinstance(tune, dict) and tune.get("seed") is None)


def seed_dir(out_dir: Path, name: str, seed: int) -> Path:
    """The folder of extra seed ``seed`` of entry ``name``."""
    return out_dir / "seeds" / name / f"seed-{int(seed)}"


def write_per_user(folder: Path, data: PerUser) -> None:
    """Write ``per_user.npz`` into ``folder`` atomically (a temporary file, then a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"users": np.asarray(data.users, dtype=np.int64)}
    arrays.update({f"m:{k}": np.asarray(v, dtype=np.float64) for k, v in data.metrics.items()})
    arrays.update({f"mask:{k}": np.asarray(v, dtype=bool) for k, v in data.masks.items()})
    tmp = folder / f".{PER_USER_FILE}.{uuid.uuid4().hex[:8]}.tmp.npz"
    try:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, folder / PER_USER_FILE)
    finally:
        tmp.unlink(missing_ok=True)


def read_per_user(folder: Path) -> PerUser | None:
    """The arrays of ``folder/per_user.npz``; ``None`` when absent or unreadable (a folder
    written before they were kept, or a damaged file)."""
    path = folder / PER_USER_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            users = np.asarray(npz["users"], dtype=np.int64)
            metrics = {k[2:]: np.asarray(npz[k], np.float64) for k in npz.files if k[:2] == "m:"}
            masks = {k[5:]: np.asarray(npz[k], bool) for k in npz.files if k[:5] == "mask:"}
    except (OSError, ValueError, KeyError):
        return None
    if any(len(v) != len(users) for v in [*metrics.values(), *masks.values()]):
        return None
    return PerUser(users, metrics, masks)


def record_intervals(data: PerUser, *, seed: int = 0) -> dict[str, dict[str, float]]:
    """95% BCa bootstrap intervals (over users, seeded) of the record's accuracy metrics:
    ``{"ndcg@10": {"low", "high", "confidence", "n_users"}, ...}`` (what ``llmrec results``
    shows). Empty when no user was evaluated."""
    from llmrec.eval.stats import bootstrap_ci

    out: dict[str, dict[str, float]] = {}
    for name in INTERVAL_METRICS:
        values = data.metrics.get(name)
        if values is None or len(values) < 2:
            continue
        iv = bootstrap_ci(values, seed=seed)
        out[name] = {"low": iv.low, "high": iv.high, "confidence": iv.confidence}
        out[name]["n_users"] = float(iv.n_users)
    return out


def read_seed(folder: Path, key: str) -> PerUser | None:
    """A finished extra-seed stage's arrays when its ``seed.json`` carries ``key``."""
    try:
        meta = json.loads((folder / SEED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("stage_key") != key:
        return None
    return read_per_user(folder)


def write_seed(folder: Path, data: PerUser, meta: dict[str, Any]) -> None:
    """Write an extra-seed stage: its arrays first, then ``seed.json`` (which marks it done)."""
    write_per_user(folder, data)
    atomic_write_text(folder / SEED_FILE, dumps_json(meta, sort_keys=True))
