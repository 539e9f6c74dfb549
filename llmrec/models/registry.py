"""Short names of recommenders, resolved lazily to classes.

A config names a model by a short name registered here or by an import path
``package.module:ClassName``; nothing else is guessed. A saved model folder is data, not
config: it may name only a registered short name (:func:`registered_model_class`), so a file on
disk never chooses what gets imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llmrec.errors import ConfigError

if TYPE_CHECKING:
    from llmrec.models.base import Recommender

MODELS: dict[str, str] = {
    "popularity": "llmrec.models.popularity:Popularity",
    "itemknn": "llmrec.models.itemknn:ItemKNN",
    "bpr": "llmrec.models.bpr:BPR",
    "sasrec": "llmrec.models.sasrec:SASRec",
    "transition": "llmrec.models.transition:Transition",
    "textknn": "llmrec.paradigms.embeddings.knn:TextKNN",
    "lm-sasrec": "llmrec.paradigms.embeddings.lm_sasrec:LMSASRec",
    "user-tower": "llmrec.paradigms.embeddings.user_tower:UserTower",
    "two_stage": "llmrec.paradigms.direct.two_stage:TwoStage",
    "tiger": "llmrec.paradigms.tokens.generative:GenerativeRetrieval",
    "token-sasrec": "llmrec.paradigms.tokens.token_sasrec:TokenSASRec",
}

#: the paradigm each registered model stands for (what ``llmrec serve`` labels it with)
PARADIGMS: dict[str, str] = {
    "popularity": "classic",
    "itemknn": "classic",
    "bpr": "classic",
    "sasrec": "classic",
    "transition": "classic",
    "textknn": "embeddings",
    "lm-sasrec": "embeddings",
    "user-tower": "embeddings",
    "two_stage": "direct",
    "tiger": "tokens",
    "token-sasrec": "tokens",
}


def get_model_class(name: str) -> type[Recommender]:
    """The class for a registered short name or a ``module:Class`` import path."""
    target = MODELS.get(name, name)
    if ":" not in target:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"unknown model {name!r}; known models: {known} (or module:Class)")
    return _import_class(target)


def registered_model_class(name: str) -> type[Recommender]:
    """The class of a registered short name; anything else (an import path included) is a
    :class:`ConfigError`. What a saved folder's ``config.json`` is resolved with."""
    if name not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"model {name!r} is not a registered model; known models: {known}")
    return _import_class(MODELS[name])


def _import_class(target: str) -> type[Recommender]:
    from llmrec.models.base import Recommender

    module_name, _, attr = target.partition(":")
    try:
        klass = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import model {target!r}: {exc}") from None
    if not (isinstance(klass, type) and issubclass(klass, Recommender)):
        raise ConfigError(f"{target!r} is not a Recommender subclass")
    return klass


def create_model(name: str, config: dict[str, object] | None = None) -> Recommender:
    """Instantiate a model by name with a config dict (validated by the model's config class)."""
    return get_model_class(name)(config or {})
