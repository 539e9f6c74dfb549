"""Small file helpers shared by run records, compare folders and config loading."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmrec.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping a YAML (or JSON) file holds; one-line :class:`ConfigError` otherwise.

    ``what`` names the file in messages, e.g. ``"config file"``.
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return data


def validated(model: type[M], raw: dict[str, Any], what: str) -> M:
    """``raw`` validated as ``model``; the first problem as a one-line :class:`ConfigError`
    naming where it is (``invalid serve config at port: ...``)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid {what} at {where or 'top level'}: {err['msg']}") from None


def check_unique_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` (inside a pydantic validator) naming the repeated entry names."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"entry names must be unique; repeated: {', '.join(dupes)}")
