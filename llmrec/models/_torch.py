"""Shared helpers of the torch-trained recommenders (BPR-MF, SASRec).

Seeding and thread count are scoped: :func:`torch_session` sets them for one ``fit`` or
``score`` call and restores torch's previous thread count afterwards, so a model never changes
the process for its neighbours. Early stopping ranks each user's held-out validation item
itself (models must not import :mod:`llmrec.eval`, which imports them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from llmrec import progress
from llmrec.data.dataset import Dataset, UserHistory
from llmrec.errors import ConfigError, require
from llmrec.models.base import ModelConfig
from llmrec.models.trainlog import TrainLog
from llmrec.runtime import RuntimeOptions

if TYPE_CHECKING:
    import torch

VALID_K = 10


class TorchConfig(ModelConfig):
    """Fields every torch-trained model shares."""

    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 penalty")
    batch_size: int = Field(1024, ge=1)
    epochs: int = Field(200, ge=1, description="most training epochs")
    patience: int = Field(
        10, ge=1, description="stop after this many evaluations without a better valid NDCG@10"
    )
    eval_every: int = Field(1, ge=1, description="epochs between validation evaluations")


def import_torch() -> Any:
    """torch, or a one-line install hint when the ``torch`` extra is missing."""
    return require("torch", "torch")


@contextlib.contextmanager
def torch_session(runtime: RuntimeOptions, seed: int | None = None) -> Iterator[Any]:
    """Set torch's thread count to ``runtime.threads`` (and the seed, if given) for the block;
    restore the thread count. Yields the ``torch`` module.
    """
    threads = runtime.threads
    torch = import_torch()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        yield torch
    finally:
        torch.set_num_threads(previous)


def heldout_targets(valid: Dataset | None) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` int64: each validation user's first held-out item (empty if none)."""
    if valid is None or valid.n_interactions == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    hist = valid.history()
    users = np.flatnonzero(hist.lengths() > 0)
    return users.astype(np.int64), hist.items[hist.indptr[users]].astype(np.int64)


def ndcg_at_k(
    scores: np.ndarray, users: np.ndarray, targets: np.ndarray, history: UserHistory
) -> float:
    """Mean NDCG@10 of one held-out item per user under full ranking.

    Args:
        scores: ``(n, n_items)`` float32 scores of ``users`` (modified: known items masked).
        users: ``(n,)`` int64 user indices.
        targets: ``(n,)`` int64 held-out item of each user.
        history: items known at query time; they are excluded from the ranking.

    The rank counts items scoring strictly higher than the target (ties favour the target,
    as a stable top-k with the target first would).
    """
    rows = np.arange(len(users))
    target_scores = scores[rows, targets].copy()
    for row, user in enumerate(users):
        scores[row, history.of(int(user))] = -np.inf
    rank = (scores > target_scores[:, None]).sum(axis=1)
    gains = np.where(rank < VALID_K, 1.0 / np.log2(rank + 2.0), 0.0)
    return float(gains.mean()) if len(gains) else 0.0


def train_loop(
    config: TorchConfig,
    run_epoch: Callable[[int], float],
    evaluate: Callable[[], float] | None,
    snapshot: Callable[[], dict[str, torch.Tensor]],
    restore: Callable[[dict[str, torch.Tensor]], None],
) -> TrainLog:
    """Train up to ``config.epochs`` epochs with early stopping on ``evaluate``.

    Args:
        run_epoch: trains one epoch (argument: 0-based epoch), returns its mean loss.
        evaluate: validation NDCG@10 of the current weights; ``None`` trains all epochs.
        snapshot: copy of the current weights; ``restore`` puts such a copy back.

    The weights of the best evaluation are restored at the end; without validation, the last.
    """
    log = TrainLog()
    start, cpu_start = time.perf_counter(), time.process_time()
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    with progress.phase("train", config.epochs, unit="epoch") as bar:
        for epoch in range(config.epochs):
            log.losses.append(run_epoch(epoch))
            last = epoch + 1 == config.epochs
            if evaluate is None or ((epoch + 1) % config.eval_every and not last):
                bar.update(1, **_epoch_postfix(log))
                continue
            score = evaluate()
            log.epochs.append(epoch + 1)
            log.scores.append(score)
            log.seconds.append(time.perf_counter() - start)
            if score > log.best_score:
                log.best_score, log.best_epoch = score, epoch + 1
                log.time_to_best_s = log.seconds[-1]
                log.cpu_to_best_s = time.process_time() - cpu_start
                best_state = snapshot()
                stale = 0
            else:
                stale += 1
            bar.update(1, **_epoch_postfix(log))
            if stale >= config.patience:
                break
    if best_state is not None:
        restore(best_state)
    else:
        log.best_epoch = len(log.losses)
        log.time_to_best_s = time.perf_counter() - start
        log.cpu_to_best_s = time.process_time() - cpu_start
    log.fit_s = time.perf_counter() - start
    return log


def _epoch_postfix(log: TrainLog) -> dict[str, object]:
    """What a progress bar shows beside the epoch count: last loss, last valid NDCG@10 and
    the best so far (with its epoch)."""
    out: dict[str, object] = {"loss": log.losses[-1]}
    if log.scores:
        out["ndcg@10"] = log.scores[-1]
        out["best"] = f"{log.best_score:.4f}@{log.best_epoch}"
    return out


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a module's ``state_dict``."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def state_to_numpy(module: torch.nn.Module, prefix: str) -> dict[str, np.ndarray]:
    """``state_dict`` as numpy arrays under ``prefix`` (for safetensors)."""
    return {f"{prefix}{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def numpy_to_state(state: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_to_numpy`: tensors of the keys under ``prefix``."""
    torch = import_torch()
    return {
        k.removeprefix(prefix): torch.from_numpy(np.array(v))
        for k, v in state.items()
        if k.startswith(prefix)
    }


def load_net_state(net: torch.nn.Module, state: dict[str, np.ndarray], prefix: str) -> None:
    """Load the arrays under ``prefix`` into ``net``, checked first: the same names as the
    network's own state, each of its shape and kind (float or integer); a saved file that
    disagrees is a one-line :class:`~llmrec.errors.ConfigError` naming the first difference."""
    saved = numpy_to_state(state, prefix)
    own = net.state_dict()
    missing = sorted(set(own) - set(saved))
    extra = sorted(set(saved) - set(own))
    if missing or extra:
        what = f"lacks {prefix}{missing[0]}" if missing else f"has unknown {prefix}{extra[0]}"
        raise ConfigError(f"the saved network {what}")
    for name, tensor in own.items():
        got = saved[name]
        if tuple(got.shape) != tuple(tensor.shape):
            raise ConfigError(
                f"array {prefix}{name!r} has shape {tuple(got.shape)}, expected "
                f"{tuple(tensor.shape)} for this config and catalogue"
            )
        if got.is_floating_point() != tensor.is_floating_point():
            raise ConfigError(
                f"array {prefix}{name!r} has dtype {got.dtype}, expected {tensor.dtype}"
            )
    net.load_state_dict(saved)
