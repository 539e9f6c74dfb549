"""Where llmrec keeps its caches: the one module that reads the environment for defaults.

``LLMREC_HOME`` overrides the root (default: ``$XDG_DATA_HOME/llmrec``, else
``~/.local/share/llmrec``).
Library functions take explicit paths and fall back to these defaults only when given none.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Root of llmrec's data, model and LM caches."""
    env = os.environ.get("LLMREC_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "llmrec"


def data_dir() -> Path:
    """Downloaded and verified datasets (MovieLens-100K lives in ``data_dir()/ml-100k``)."""
    return home() / "data"


def model_cache_dir() -> Path:
    """Converted model weights (GGUF dequantised to safetensors, assembled GGUF files)."""
    return home() / "models"


def lm_cache_dir() -> Path:
    """Cached LM answers and encodings."""
    return home() / "lm-cache"


def results_db() -> Path:
    """The results store that ``llmrec run`` appends to and ``llmrec results`` queries."""
    return home() / "results.sqlite"


def runs_dir() -> Path:
    """Default parent folder of run folders."""
    return Path("runs")


def progress_rates() -> Path:
    """Rates measured by the last long LM phases, for the estimate printed before the next."""
    return home() / "progress-rates.json"
