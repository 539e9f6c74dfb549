"""What early stopping saw while a torch model trained (a plain record, no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TrainLog"]


@dataclass
class TrainLog:
    """What early stopping saw: one entry per evaluation.

    Attributes:
        epochs: epoch number (1-based) of each evaluation.
        scores: validation NDCG@10 of each evaluation.
        seconds: wall seconds since training started, at the end of each evaluation.
        best_epoch: epoch whose weights were kept (0 if never evaluated).
        best_score: its validation NDCG@10.
        time_to_best_s: seconds from the start until the best evaluation ended.
        cpu_to_best_s: CPU seconds of this process (all threads) until then: steadier than wall
            time on a shared machine.
        fit_s: seconds of the whole training loop.
    """

    epochs: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("-inf")
    time_to_best_s: float = 0.0
    cpu_to_best_s: float = 0.0
    fit_s: float = 0.0
