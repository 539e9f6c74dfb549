"""Small file helpers shared by run records, compare folders and config loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError


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
