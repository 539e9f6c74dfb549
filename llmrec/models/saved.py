"""Reading a saved model folder defensively: ``config.json`` and ``state.safetensors`` are input.

A folder on disk may be truncated, hand-edited or foreign. :func:`read_saved_meta` and
:func:`read_saved_state` turn each kind of damage into a one-line
:class:`~llmrec.errors.ConfigError` naming the file and what is wrong, and check the arrays every
model shares (popularity, the fit-time history) against the sizes ``config.json`` claims. Each
model checks its own arrays with :func:`expect` in ``Recommender._check_state``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from llmrec._io import read_json_object
from llmrec.config import validated
from llmrec.errors import ConfigError

STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"

#: numpy dtype kinds by what they hold
FLOAT = "f"
INTEGER = "iu"
NUMBER = "iuf"
BYTES = "u"


class SavedMeta(BaseModel):
    """What ``config.json`` of a saved model holds."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr
    config: dict[str, Any]
    n_users: StrictInt = Field(ge=0)
    n_items: StrictInt = Field(ge=0)


def read_saved_meta(folder: Path) -> SavedMeta:
    """The checked ``config.json`` of the saved model in ``folder``."""
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is a file"
        raise ConfigError(f"{folder} holds no saved model: it {what}")
    path = folder / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{folder} holds no saved model ({CONFIG_FILE} missing)")
    raw = read_json_object(path, "saved model config")
    return validated(SavedMeta, raw, str(path))


def read_saved_state(folder: Path, n_users: int, n_items: int) -> dict[str, np.ndarray]:
    """The arrays of ``state.safetensors``, the shared ones checked against ``n_users`` and
    ``n_items``: popularity ``(n_items,)``, history ``indptr`` ``(n_users + 1,)`` rising from 0
    to ``len(items)``, ``items`` in ``0 .. n_items - 1``, ``timestamps`` aligned with them."""
    state = _load_safetensors(folder / STATE_FILE)
    try:
        check_shared_state(state, n_users, n_items)
    except ConfigError as exc:
        raise ConfigError(f"{folder}: {exc}") from None
    return state


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ConfigError(f"{path.parent} holds no model state ({path.name} missing)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path} is damaged or not a safetensors file: {first}") from None


def check_shared_state(state: Mapping[str, np.ndarray], n_users: int, n_items: int) -> None:
    """Check the arrays the base class saves (see :func:`read_saved_state`)."""
    expect(state, "base.popularity", FLOAT, (n_items,))
    indptr = expect(state, "base.indptr", INTEGER, (n_users + 1,))
    items = expect(state, "base.items", INTEGER, (None,))
    expect(state, "base.timestamps", INTEGER, (len(items),))
    check_offsets("base.indptr", indptr, len(items))
    check_indices("base.items", items, n_items)


def expect(
    state: Mapping[str, np.ndarray],
    key: str,
    kinds: str,
    shape: Sequence[int | None],
) -> np.ndarray:
    """``state[key]``, checked: present, of a dtype kind in ``kinds`` (:data:`FLOAT`,
    :data:`INTEGER`, ...) and of ``shape`` (``None``: any length on that axis)."""
    if key not in state:
        raise ConfigError(f"the saved state lacks the array {key!r}")
    array = state[key]
    if array.dtype.kind not in kinds:
        raise ConfigError(f"array {key!r} has dtype {array.dtype}, expected {_kind_names(kinds)}")
    fits = array.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(array.shape, shape, strict=True)
    )
    if not fits:
        wanted = "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
        raise ConfigError(f"array {key!r} has shape {tuple(array.shape)}, expected {wanted}")
    return array


def check_offsets(key: str, indptr: np.ndarray, total: int) -> None:
    """A CSR row-offset array: starts at 0, never falls, ends at ``total``."""
    if len(indptr) and (indptr[0] != 0 or indptr[-1] != total or (np.diff(indptr) < 0).any()):
        raise ConfigError(f"array {key!r} is not a row-offset array ending at {total}")


def check_indices(key: str, values: np.ndarray, bound: int) -> None:
    """Every entry of ``values`` lies in ``0 .. bound - 1``."""
    if len(values) and (values.min() < 0 or values.max() >= bound):
        raise ConfigError(f"array {key!r} holds indices outside 0..{bound - 1}")


def _kind_names(kinds: str) -> str:
    names = {"f": "float", "i": "int", "u": "unsigned int"}
    return " or ".join(names[k] for k in kinds)


def square_csr_state(prefix: str, matrix: Any) -> dict[str, np.ndarray]:
    """A scipy CSR matrix as the three arrays ``PREFIX.data``, ``.indices``, ``.indptr``."""
    return {
        f"{prefix}.data": matrix.data,
        f"{prefix}.indices": matrix.indices,
        f"{prefix}.indptr": matrix.indptr,
    }


def expect_square_csr(state: Mapping[str, np.ndarray], prefix: str, n: int) -> np.ndarray:
    """Check the arrays :func:`square_csr_state` wrote make an ``(n, n)`` CSR matrix; its
    ``data`` array (for further checks of the values)."""
    data = expect(state, f"{prefix}.data", FLOAT, (None,))
    indices = expect(state, f"{prefix}.indices", INTEGER, (len(data),))
    indptr = expect(state, f"{prefix}.indptr", INTEGER, (n + 1,))
    check_offsets(f"{prefix}.indptr", indptr, len(data))
    check_indices(f"{prefix}.indices", indices, n)
    return data


def square_csr_from_state(state: Mapping[str, np.ndarray], prefix: str, n: int) -> Any:
    """The ``(n, n)`` scipy CSR matrix :func:`square_csr_state` saved."""
    import scipy.sparse as sp

    arrays = (state[f"{prefix}.data"], state[f"{prefix}.indices"], state[f"{prefix}.indptr"])
    return sp.csr_matrix(arrays, shape=(n, n))
