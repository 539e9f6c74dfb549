"""Small file helpers shared by run records, compare folders, saved models and config loading.

Every JSON file llmrec writes goes through :func:`dumps_json` (RFC 8259: an undefined number
is ``null``, never ``NaN``); every folder that must appear whole goes through
:func:`staged_dir` (written beside the target and renamed into place).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError

#: marks a folder being written (``.NAME.partial-<hex>``); such a folder is never a result
PARTIAL_MARK = ".partial-"


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, numpy scalars and arrays
    turned into Python numbers and lists, tuples into lists and paths into strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return json_safe(value.tolist())  # numpy scalar or array
    return value


def dumps_json(
    value: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """``value`` as strict JSON text: NaN and infinities become ``null`` (see :func:`json_safe`).

    A value JSON cannot hold is passed to ``default`` (as in :func:`json.dumps`); without one it
    is a ``TypeError`` (a bug in the writer, not user input).
    """
    return json.dumps(
        json_safe(value), indent=indent, sort_keys=sort_keys, allow_nan=False, default=default
    )


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a one-line :class:`ConfigError` naming ``what`` and the path
    when it is missing, a folder, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def read_json(path: Path, what: str) -> Any:
    """The JSON value ``path`` holds; one-line :class:`ConfigError` naming it otherwise.

    ``NaN`` written by older versions is still read (as a float).
    """
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Like :func:`read_json`, and the value must be a JSON object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object, not {type(data).__name__}")
    return data


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping a YAML (or JSON) file holds; one-line :class:`ConfigError` otherwise.

    ``what`` names the file in messages, e.g. ``"config file"``.
    """
    import yaml

    text = read_text_file(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return data


def make_dirs(path: Path, what: str) -> Path:
    """Create the folder ``path`` (and its parents); one-line :class:`ConfigError` naming it
    when that is impossible (a file in the way, no permission)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    return path


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh sibling folder ``.NAME.partial-<hex>`` to write ``target`` into.

    When the block ends normally the folder replaces ``target`` (see :func:`replace_dir`);
    when it raises (an error, Ctrl-C) the partial folder is deleted. Either way no reader ever
    sees a half-written ``target``.
    """
    make_dirs(target.parent, "folder")
    tmp = target.with_name(f".{target.name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target``, replacing what is there: the old folder is
    renamed aside first and deleted after, so ``target`` is always either old or new, whole."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(f"{target} exists and is not a folder; refusing to replace it")
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_unique_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` (inside a pydantic validator) naming the repeated entry names."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"entry names must be unique; repeated: {', '.join(dupes)}")
