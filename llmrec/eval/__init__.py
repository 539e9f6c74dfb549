"""Evaluation: metrics (pure functions), protocols (full and candidate ranking).

Models never import this package; it imports them.
"""

from llmrec.eval.metrics import Truth, per_user_metrics
from llmrec.eval.protocols import (
    EvalResult,
    SeenMask,
    check_ks,
    clean_rankings,
    evaluate,
    evaluate_candidates,
    sample_candidates,
)

__all__ = [
    "EvalResult",
    "SeenMask",
    "Truth",
    "check_ks",
    "clean_rankings",
    "evaluate",
    "evaluate_candidates",
    "per_user_metrics",
    "sample_candidates",
]
