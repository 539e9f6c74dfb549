"""The one base of llmrec's configs and the one way a config error becomes a message.

Every component config (models, rankers, encoders, LM backends, runtime options, the run,
compare and serve configs) inherits :class:`StrictConfig`: an unknown key is an error, not a
silent no-op. Every pydantic :class:`~pydantic.ValidationError` reaches the user through
:func:`one_line`, so each reads the same: ``WHERE: FIELD: PROBLEM``.

Example::

    class SizeConfig(StrictConfig):
        dim: int = Field(default=8, ge=1)

    validated(SizeConfig, {"dim": 0}, "invalid size config")
    # ConfigError: invalid size config: dim: Input should be greater than or equal to 1
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from llmrec.errors import ConfigError

__all__ = ["StrictConfig", "make_config", "one_line", "problem", "renamed_keys", "validated"]

M = TypeVar("M", bound=BaseModel)

# pydantic's prefixes for errors raised inside validators; the message after them is ours
_PREFIXES = ("Value error, ", "Assertion failed, ")


class StrictConfig(BaseModel):
    """Base of every config: unknown keys are errors. Subclasses add their own
    ``model_config`` keys (``frozen``, ``validate_assignment``, ``strict``); pydantic merges
    them with this one."""

    model_config = ConfigDict(extra="forbid")


def one_line(error: ValidationError, where: str) -> str:
    """``error`` as one line: ``where``, then each failing field with its problem
    (``sasrec: epochs: Input should be greater than or equal to 1``); a problem with the whole
    input is at ``top level``."""
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "top level"
        parts.append(f"{loc}: {problem(err)}")
    text = "; ".join(parts) or "invalid"
    return " ".join(f"{where}: {text}".split())


def problem(error: ErrorDetails) -> str:
    """What is wrong in one error of a :class:`ValidationError` (pydantic's ``Value error,``
    prefix dropped), on one line: for a caller that names the place itself."""
    msg = str(error["msg"])
    for prefix in _PREFIXES:
        msg = msg.removeprefix(prefix)
    return " ".join(msg.split())


def validated(model: type[M], raw: Any, where: str) -> M:
    """``raw`` validated as ``model``; a failure is a :class:`ConfigError` with the
    :func:`one_line` message."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, where)) from None


def make_config(
    cls: type[M], config: M | Mapping[str, Any] | None, overrides: Mapping[str, Any], where: str
) -> M:
    """The config of a component built as ``Component(config, **overrides)`` — the one
    constructor rule (``docs/development.md``): ``config`` is a ``cls`` instance, a mapping or
    ``None`` (the defaults), and keyword ``overrides`` win over it. A bad value is a one-line
    :class:`ConfigError` starting with ``where``."""
    if isinstance(config, cls):
        if not overrides:
            return config
        data: Any = {**config.model_dump(), **overrides}
    elif config is None or isinstance(config, Mapping):
        data = {**(config or {}), **overrides}
    else:
        raise ConfigError(
            f"{where}: needs a {cls.__name__} or a mapping, got {type(config).__name__}"
        )
    return validated(cls, data, where)


def renamed_keys(data: Any, renames: Mapping[str, str], where: str) -> Any:
    """``data`` (a mapping about to be validated) with the old key names of ``renames``
    (old -> new) under their new names, each with a :class:`DeprecationWarning`; a mapping
    that sets both names keeps both, so validation names the old one as unknown. Anything
    else passes through for validation to judge. For a ``model_validator(mode="before")``."""
    if not isinstance(data, Mapping):
        return data
    old = [k for k in renames if k in data and renames[k] not in data]
    if not old:
        return data
    warnings.warn(
        f"{where}: {', '.join(f'{k} is now {renames[k]}' for k in old)}; the old name is "
        "deprecated",
        DeprecationWarning,
        stacklevel=4,
    )
    return {renames.get(k, k) if k in old else k: v for k, v in data.items()}
