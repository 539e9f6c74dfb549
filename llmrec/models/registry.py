"""Models by name: a registered short name (:mod:`llmrec.models.catalogue`) or an import path.

A config names a model by a short name registered in the catalogue or by an import path
``package.module:ClassName``; nothing else is guessed. A saved model folder is data, not
config: it may name only a registered short name (:func:`registered_model_class`), so a file on
disk never chooses what gets imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from llmrec.errors import ConfigError
from llmrec.models.base import Recommender
from llmrec.models.catalogue import (
    check_saved_name,
    find_spec,
    import_target,
    model_names,
    model_spec,
    registered_class,
)
from llmrec.models.saved import CONFIG_FILE, read_saved_meta
from llmrec.runtime import RuntimeOptions

__all__ = ["MODELS", "create_model", "get_model_class", "load_model", "registered_model_class"]


class _Targets(Mapping[str, str]):
    """A read-only view of the catalogue: short name → ``module:Class`` (kept for callers that
    only need the names and targets)."""

    def __getitem__(self, name: str) -> str:
        return model_spec(name).target

    def __iter__(self) -> Iterator[str]:
        return iter(model_names())

    def __len__(self) -> int:
        return len(model_names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and find_spec(name) is not None


#: registered short names and their import targets (a view of the catalogue)
MODELS: Mapping[str, str] = _Targets()


def get_model_class(name: str) -> type[Recommender]:
    """The class for a registered short name or a ``module:Class`` import path."""
    if find_spec(name) is not None:
        return registered_model_class(name)
    if ":" not in name:
        known = ", ".join(model_names())
        raise ConfigError(f"unknown model {name!r}; known models: {known} (or module:Class)")
    klass = import_target(name)
    if not (isinstance(klass, type) and issubclass(klass, Recommender)):
        raise ConfigError(f"{name!r} is not a Recommender subclass")
    return klass


def registered_model_class(name: str) -> type[Recommender]:
    """The class of a registered short name; anything else (an import path included) is a
    :class:`ConfigError`. What a saved folder's ``config.json`` is resolved with."""
    return cast("type[Recommender]", registered_class(name, Recommender))


def load_model(
    path: str | Path, *, runtime: RuntimeOptions | Mapping[str, Any] | None = None
) -> Recommender:
    """The model saved in the folder ``path``, whatever its class: the folder's
    ``config.json`` names it by a registered short name (never an import path), and that
    class loads it, to run as ``runtime`` says. Every damage is a one-line
    :class:`ConfigError` naming the folder.

    Example::

        model = load_model("runs/sasrec/model", runtime={"device": "cpu"})
        model.recommend(users, k=10)
    """
    folder = Path(path)
    name = read_saved_meta(folder).model
    hint = "; load it with its own class: MyModel.load(path)"
    check_saved_name(name, f"{folder}/{CONFIG_FILE}", hint=hint)
    return registered_model_class(name).load(folder, runtime=runtime)


def create_model(
    name: str, config: dict[str, object] | None = None, runtime: RuntimeOptions | None = None
) -> Recommender:
    """Instantiate a model by name with a config dict (validated by the model's config class),
    to run as ``runtime`` says."""
    return get_model_class(name)(config or {}, runtime=runtime)
