"""Datasets, loaders and splits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.data.films import enrich_with_films, fetch_films, read_films
from llmrec.data.filters import k_core, ties_by_item
from llmrec.data.loaders import (
    ColumnMap,
    _check_regular_file,
    from_frame,
    read_csv,
    read_parquet,
    read_table,
    side_paths,
    to_frames,
    write_parquet,
)
from llmrec.data.movielens import fetch_movielens_100k, load_movielens_100k
from llmrec.data.movielens_1m import fetch_movielens_1m, load_movielens_1m
from llmrec.data.splits import Split, leave_one_out, make_split, random_split, temporal
from llmrec.data.synthetic import synthetic
from llmrec.errors import ConfigError

__all__ = [
    "WIKIDATA_SUFFIX",
    "ColumnMap",
    "Dataset",
    "Split",
    "UserHistory",
    "enrich_with_films",
    "fetch_films",
    "fetch_movielens_1m",
    "fetch_movielens_100k",
    "from_frame",
    "k_core",
    "leave_one_out",
    "load_dataset",
    "load_movielens_1m",
    "load_movielens_100k",
    "make_split",
    "parse_synthetic_spec",
    "random_split",
    "read_csv",
    "read_films",
    "read_parquet",
    "read_table",
    "side_paths",
    "synthetic",
    "temporal",
    "ties_by_item",
    "to_frames",
    "write_parquet",
]

_MOVIELENS_NAMES = ("ml-100k", "movielens-100k")
_MOVIELENS_1M_NAMES = ("ml-1m", "movielens-1m")
#: a dataset name ending in this gets the Wikidata film facts (``ml-1m+wikidata``)
WIKIDATA_SUFFIX = "+wikidata"
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")


def load_dataset(
    name_or_path: str | Path,
    *,
    data_dir: Path | None = None,
    fetch: bool = True,
    seed: int = 0,
    columns: ColumnMap | dict[str, Any] | None = None,
    items: str | Path | None = None,
    users: str | Path | None = None,
    **read_kwargs: Any,
) -> Dataset:
    """A dataset by name or path.

    * ``"ml-100k"``, ``"ml-1m"``: MovieLens-100K / -1M from the cache under ``data_dir``
      (fetched if ``fetch``).
    * ``"synthetic:USERSxITEMSxINTERACTIONS"`` (sizes may end in k or M, e.g.
      ``synthetic:200kx1Mx10M``): :func:`synthetic` with ``seed``.
    * a CSV/TSV/Parquet path: :func:`read_table` with ``columns``; an item (user) table is
      ``items`` (``users``) or, for ``x.parquet``/``x.csv``, ``x.items.parquet``/``x.items.csv``
      (``x.users.*``) when such a file exists.
    * any of these followed by ``+wikidata`` (``"ml-1m+wikidata"``): the same dataset, its item
      text enriched with the Wikidata film facts (:func:`enrich_with_films`; the film table
      is fetched like the datasets), named with the suffix.
    """
    text = str(name_or_path)
    if text.lower().endswith(WIKIDATA_SUFFIX) and not Path(text).expanduser().exists():
        data = load_dataset(
            text[: -len(WIKIDATA_SUFFIX)], data_dir=data_dir, fetch=fetch, seed=seed,
            columns=columns, items=items, users=users, **read_kwargs,
        )  # fmt: skip
        return enrich_with_films(data, read_films(fetch_films(data_dir, fetch=fetch)))
    if text.lower() in _MOVIELENS_NAMES:
        return load_movielens_100k(data_dir, fetch=fetch)
    if text.lower() in _MOVIELENS_1M_NAMES:
        return load_movielens_1m(data_dir, fetch=fetch)
    if text.lower().startswith("synthetic:"):
        n_users, n_items, n_inter = parse_synthetic_spec(text)
        return synthetic(n_users, n_items, n_inter, seed=seed)
    path = Path(text).expanduser()
    if not path.exists():
        raise ConfigError(
            f"unknown dataset {text!r}: not ml-100k, ml-1m, synthetic:USERSxITEMSxINTERACTIONS, "
            f"or an existing CSV/Parquet file (any of them may end in {WIKIDATA_SUFFIX})"
        )
    _check_regular_file(path)  # a directory or a FIFO is named as such (a FIFO is not opened)
    items_guess, users_guess = side_paths(path)
    if items is None and items_guess.is_file():
        items = items_guess
    if users is None and users_guess.is_file():
        users = users_guess
    return read_table(path, items=items, users=users, columns=columns, **read_kwargs)


def parse_synthetic_spec(spec: str) -> tuple[int, int, int]:
    """``"synthetic:200kx1Mx10M"`` -> ``(200000, 1000000, 10000000)``."""
    body = spec.split(":", 1)[1]
    parts = body.lower().split("x")
    sizes = [_size(p) for p in parts] if len(parts) == 3 else []
    if len(sizes) != 3 or any(s is None or s < 1 for s in sizes):
        raise ConfigError(
            f"synthetic dataset spec {spec!r} must be synthetic:USERSxITEMSxINTERACTIONS, "
            f"e.g. synthetic:1000x500x20000 or synthetic:200kx1Mx10M"
        )
    return int(sizes[0] or 0), int(sizes[1] or 0), int(sizes[2] or 0)


def _size(text: str) -> int | None:
    match = _SIZE.match(text.strip())
    if match is None:
        return None
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)
