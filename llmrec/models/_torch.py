"""Shared helpers of the torch-trained recommenders (BPR-MF, SASRec).

Seeding and thread count are scoped: :func:`torch_session` sets them for one ``fit`` or
``score`` call and restores torch's previous thread count afterwards, so a model never changes
the process for its neighbours. Early stopping ranks each user's held-out validation item
itself (models must not import :mod:`llmrec.eval`, which imports them). :func:`rank_on_device`
is :meth:`~llmrec.models.base.Recommender.recommend`'s ranking done in torch where the scores
are: only the top K of each user leaves the device.
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
from llmrec.models.base import ModelConfig, seen_cells
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
    scores: torch.Tensor, users: np.ndarray, targets: np.ndarray, history: UserHistory
) -> float:
    """Mean NDCG@10 of one held-out item per user under full ranking, ranked where the scores
    are (a model's device): only each user's rank comes back.

    Args:
        scores: ``(n, n_items)`` float32 tensor of the scores of ``users``.
        users: ``(n,)`` int64 user indices.
        targets: ``(n,)`` int64 held-out item of each user.
        history: items known at query time; they are excluded from the ranking.

    The rank counts items scoring strictly higher than the target (ties favour the target,
    as a stable top-k with the target first would).
    """
    torch = import_torch()
    with torch.inference_mode():
        device = scores.device
        rows = torch.arange(len(users), device=device)
        target_scores = scores[rows, torch.from_numpy(targets).to(device)]
        seen_rows, seen_cols = (torch.from_numpy(a).to(device) for a in seen_cells(users, history))
        masked = scores.index_put((seen_rows, seen_cols), torch.tensor(-np.inf, device=device))
        rank = (masked > target_scores[:, None]).sum(dim=1).cpu().numpy()
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


def rank_on_device(
    runtime: RuntimeOptions,
    scores_of: Callable[[], torch.Tensor],
    users: np.ndarray,
    hist: UserHistory,
    popularity: np.ndarray,
    k: int,
    exclude_seen: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(items, scores)`` ``(len(users), k)`` int64 / float32 numpy: the top ``k`` of the
    ``(len(users), n_items)`` scores ``scores_of()`` computes on the device, ranked there.

    The same steps as the numpy path of ``Recommender.recommend``, in the same order, so the
    result is bit-identical: NaN scores rank last, users without history in ``hist`` get
    ``popularity``, known items are masked when ``exclude_seen``, then :func:`top_k`.
    """
    with torch_session(runtime) as torch, torch.inference_mode():
        scores = scores_of().to(torch.float32)
        scores = scores.masked_fill(scores.isnan(), -np.inf)
        cold = hist.lengths()[users] == 0
        if cold.any():
            scores[torch.from_numpy(cold).to(scores.device)] = torch.from_numpy(
                np.asarray(popularity, dtype=np.float32)
            ).to(scores.device)
        if exclude_seen:
            rows, cols = (torch.from_numpy(a).to(scores.device) for a in seen_cells(users, hist))
            scores[rows, cols] = -np.inf
        items, top = top_k(scores, k)
        return items.cpu().numpy(), top.cpu().numpy()


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best items of each row of ``scores`` ``(n, n_items)``, best first, and their
    scores, on the scores' device; equal scores go to the lower item index.

    ``torch.topk`` alone may pick any of the items tied with the k-th score, so, as the numpy
    ranking does, it only finds the k-th score: every item strictly above it is kept, the tied
    ones are filled in index order, and the k kept are sorted by score with a stable sort
    (``-0.0`` counted as ``0.0``, which a GPU's radix sort would otherwise put apart).

    Example: scores ``[[1, 3, 3, 2]]`` and ``k=2`` give items ``[[1, 2]]``.
    """
    torch = import_torch()
    n_rows, n_items = scores.shape
    if k == 0:
        empty = torch.zeros((n_rows, 0), dtype=torch.int64, device=scores.device)
        return empty, empty.to(scores.dtype)
    if k < n_items:
        kth = torch.topk(scores, k, dim=1).values[:, k - 1 : k]
        above = scores > kth
        tied = scores == kth
        room = k - above.sum(dim=1, keepdim=True)
        keep = above | (tied & (tied.cumsum(dim=1) <= room))
        part = keep.nonzero()[:, 1].reshape(n_rows, k)
    else:
        part = torch.arange(n_items, device=scores.device).expand(n_rows, n_items)
    part_scores = scores.gather(1, part)
    order = torch.sort(part_scores + 0.0, dim=1, descending=True, stable=True).indices
    return part.gather(1, order), part_scores.gather(1, order)
