"""The one way llmrec turns a seed into a random generator, so every seeded step refuses the
same seeds with the same message (numpy's own error for a negative seed is a traceback)."""

from __future__ import annotations

import numpy as np

from llmrec.errors import ConfigError

__all__ = ["generator"]


def generator(seed: int) -> np.random.Generator:
    """``np.random.default_rng(seed)`` for a whole number ``seed >= 0``.

    Raises:
        ConfigError: ``seed`` is negative or not a whole number.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be a whole number, got {seed!r}")
    if seed < 0:
        raise ConfigError(f"seed must be 0 or more, got {seed}")
    return np.random.default_rng(int(seed))
