"""``llmrec serve``: trained models of every paradigm behind one HTTP service.

:func:`load_service` loads a run folder, a compare folder or a serve config;
:func:`~llmrec.serve.app.create_app` wraps it in a FastAPI app (the ``serve`` extra). See
``docs/serve.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.serve.config import BatchingConfig, ServeConfig, ServeEntry, load_serve_config
from llmrec.serve.service import Answer, CannotServe, Query, Service, config_from_folder

if TYPE_CHECKING:
    from llmrec.data.dataset import Dataset

__all__ = [
    "Answer",
    "BatchingConfig",
    "CannotServe",
    "Query",
    "ServeConfig",
    "ServeEntry",
    "Service",
    "config_from_folder",
    "load_serve_config",
    "load_service",
]


def load_service(
    source: Path | ServeConfig, data: Dataset | None = None, **overrides: Any
) -> Service:
    """A :class:`Service` from a run/compare folder, a YAML serve config, or a config object."""
    if isinstance(source, ServeConfig):
        config = source
    elif Path(source).is_dir():
        config = config_from_folder(Path(source), **overrides)
    else:
        config = load_serve_config(Path(source), **overrides)
    return Service.load(config, data=data)
