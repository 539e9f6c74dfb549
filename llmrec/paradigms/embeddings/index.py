"""A vector index over faiss: exact search for small catalogues, HNSW or IVF for large ones.

Vectors are compared by inner product; callers L2-normalise them first, so scores are cosine
similarities. ``kind="auto"`` picks exact search (``IndexFlatIP``) up to ``exact_max`` vectors and
HNSW above. Indexes are saved with ``faiss.write_index`` (faiss's own format, no pickle).

Example::

    index = VectorIndex(IndexConfig(kind="hnsw")).build(vectors)   # (n, d) float32
    scores, ids = index.search(queries, k=10)                      # (q, 10) each
    index.save("items.faiss"); VectorIndex.load("items.faiss")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmrec._io import dumps_json, read_json_object
from llmrec.config import StrictConfig, validated
from llmrec.errors import ConfigError, require

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]


class IndexConfig(StrictConfig):
    """How to index vectors.

    Attributes:
        kind: ``flat`` (exact), ``hnsw``, ``ivf``, or ``auto`` (flat up to ``exact_max``).
        exact_max: the largest catalogue that ``auto`` searches exactly.
        hnsw_m: HNSW graph degree (links per node on the upper layers; twice that on layer 0).
        ef_construction: HNSW build-time beam width; higher builds slower, recalls better.
        ef_search: HNSW query-time beam width (at least ``k`` is used).
        ivf_nlist: IVF cells; ``None`` gives ``4 * sqrt(n)``.
        nprobe: IVF cells visited per query.
        train_size: vectors sampled (seeded) to train IVF centroids.
        n_threads: faiss OpenMP threads; ``None`` leaves faiss's setting alone.
    """

    kind: IndexKind = "auto"
    exact_max: int = Field(default=100_000, ge=0)
    hnsw_m: int = Field(default=32, ge=4)
    ef_construction: int = Field(default=80, ge=8)
    ef_search: int = Field(default=64, ge=1)
    ivf_nlist: int | None = Field(default=None, ge=1)
    nprobe: int = Field(default=32, ge=1)
    train_size: int = Field(default=200_000, ge=1000)
    n_threads: int | None = Field(default=None, ge=1)
    seed: int = 0


def _faiss() -> Any:
    return require("faiss", "embeddings")


class VectorIndex:
    """A faiss index plus the config that built it.

    Attributes:
        kind: the kind actually built (``flat``, ``hnsw`` or ``ivf``; never ``auto``).
        dim: vector width.
        build_seconds: wall time of :meth:`build`.
    """

    def __init__(self, config: IndexConfig | None = None) -> None:
        self.config = config or IndexConfig()
        self.kind: str = "unbuilt"
        self.dim = 0
        self.build_seconds = 0.0
        self._index: Any = None

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def resolve_kind(self, n: int) -> str:
        """The kind ``auto`` (or the configured kind) means for ``n`` vectors."""
        if self.config.kind != "auto":
            return self.config.kind
        return "flat" if n <= self.config.exact_max else "hnsw"

    def build(self, vectors: np.ndarray) -> VectorIndex:
        """Index ``(n, dim)`` float32 vectors; row ``i`` gets id ``i``."""
        faiss = _faiss()
        x = _as_matrix(vectors)
        if self.config.n_threads is not None:
            faiss.omp_set_num_threads(self.config.n_threads)
        start = time.perf_counter()
        self.kind = self.resolve_kind(len(x))
        self.dim = x.shape[1]
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.config.ef_construction
        else:
            index = self._train_ivf(x)
        index.add(x)
        self._index = index
        self._apply_search_params()
        self.build_seconds = time.perf_counter() - start
        return self

    def _train_ivf(self, x: np.ndarray) -> Any:
        faiss = _faiss()
        nlist = self.config.ivf_nlist or max(1, int(4 * np.sqrt(len(x))))
        nlist = min(nlist, len(x))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(self.config.seed)
        n_train = min(len(x), max(self.config.train_size, 39 * nlist))
        sample = x[np.sort(rng.choice(len(x), n_train, replace=False))]
        index.train(sample)
        return index

    def _apply_search_params(self) -> None:
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = self.config.ef_search
        elif self.kind == "ivf":
            self._index.nprobe = self.config.nprobe

    def set_search(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the query-time effort (HNSW ``ef_search``, IVF ``nprobe``) without a rebuild."""
        update: dict[str, int] = {}
        if ef_search is not None:
            update["ef_search"] = ef_search
        if nprobe is not None:
            update["nprobe"] = nprobe
        self.config = self.config.model_copy(update=update)
        if self._index is not None:
            self._apply_search_params()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product: ``(scores (q, k) float32, ids (q, k) int64)``, best first.

        Slots beyond the catalogue (or not reached by an approximate index) hold id -1 and score
        ``-inf``.
        """
        if self._index is None:
            raise ConfigError("the vector index is empty; call build() or load() first")
        q = _as_matrix(queries)
        if q.shape[1] != self.dim:
            raise ConfigError(f"queries have width {q.shape[1]}, the index holds {self.dim}")
        k = int(k)
        if k <= 0 or len(q) == 0:
            return np.zeros((len(q), max(k, 0)), np.float32), np.zeros(
                (len(q), max(k, 0)), np.int64
            )
        if self.kind == "hnsw":
            # a beam narrower than k cannot return k results
            self._index.hnsw.efSearch = max(self.config.ef_search, k)
        scores, ids = self._index.search(q, k)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids.astype(np.int64)

    def vectors(self) -> np.ndarray:
        """``(n, dim)`` float32: the stored vectors (all three kinds keep them uncompressed)."""
        if self._index is None:
            raise ConfigError("the vector index is empty")
        if self.kind == "ivf":
            self._index.make_direct_map()
        return np.asarray(self._index.reconstruct_n(0, len(self)), dtype=np.float32)

    def nbytes(self) -> int:
        """Size of the serialised index in bytes (what :meth:`save` writes)."""
        return int(_faiss().serialize_index(self._index).nbytes)

    # --- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index with ``faiss.write_index`` (plus a small JSON of the config)."""
        if self._index is None:
            raise ConfigError("cannot save an empty vector index")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self._index, str(target))
        _config_path(target).write_text(dumps_json(self.config.model_dump(mode="json")))
        return target

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        """Read an index written by :meth:`save`; a damaged file is a :class:`ConfigError`."""
        faiss = _faiss()
        target = Path(path)
        if not target.is_file():
            raise ConfigError(f"no vector index at {target}")
        out = cls(_read_index_config(_config_path(target)))
        try:
            out._index = faiss.read_index(str(target))
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise ConfigError(f"{target} is damaged or not a faiss index: {first}") from None
        out.dim = int(out._index.d)
        out.kind = _kind_of(out._index, faiss)
        out._apply_search_params()
        return out


def _read_index_config(path: Path) -> IndexConfig | None:
    """The config saved beside an index (``None`` if there is none)."""
    if not path.is_file():
        return None
    raw = read_json_object(path, "vector index config")
    return validated(IndexConfig, raw, f"{path} is not a vector index config")


def _config_path(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def _kind_of(index: Any, faiss: Any) -> str:
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


def _as_matrix(x: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2:
        raise ConfigError(f"vectors must be a 2-d (n, dim) array, got shape {arr.shape}")
    return arr


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero); float32."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return (arr / np.maximum(norms, 1e-12)).astype(np.float32)
