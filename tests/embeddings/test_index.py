"""The faiss vector index: exact, HNSW and IVF agree with brute force; save/load round-trips."""

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.paradigms.embeddings.index import IndexConfig, VectorIndex, normalize


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 24))
    return normalize(centres[rng.integers(0, 20, 2000)] + 0.3 * rng.standard_normal((2000, 24)))


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def test_flat_index_is_exact(vectors):
    index = VectorIndex(IndexConfig(kind="flat")).build(vectors)
    scores, ids = index.search(vectors[:50], 10)
    np.testing.assert_array_equal(ids[:, 0], np.arange(50))
    expected = np.sort(-(vectors[:50] @ vectors.T), axis=1)[:, :10]
    np.testing.assert_allclose(-scores, expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_recall_most_neighbours(vectors, kind):
    config = IndexConfig(kind=kind, ivf_nlist=16, nprobe=8, ef_search=64)
    index = VectorIndex(config).build(vectors)
    queries = vectors[::40]
    _, ids = index.search(queries, 10)
    truth = brute_force(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall > 0.9
    assert index.kind == kind


def test_auto_picks_exact_for_small_and_hnsw_for_large():
    index = VectorIndex(IndexConfig(kind="auto", exact_max=100))
    assert index.resolve_kind(100) == "flat"
    assert index.resolve_kind(101) == "hnsw"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(vectors, kind, tmp_path):
    index = VectorIndex(IndexConfig(kind=kind, ivf_nlist=16, nprobe=4, ef_search=20)).build(vectors)
    before = index.search(vectors[:20], 5)
    loaded = VectorIndex.load(index.save(tmp_path / "items.faiss"))
    after = loaded.search(vectors[:20], 5)
    assert loaded.kind == kind and loaded.config == index.config
    np.testing.assert_array_equal(before[1], after[1])
    assert index.nbytes() > vectors.nbytes * 0.9


def test_k_beyond_catalogue_pads(vectors):
    index = VectorIndex(IndexConfig(kind="flat")).build(vectors[:5])
    scores, ids = index.search(vectors[:2], 8)
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()


def test_search_effort_changes_without_rebuild(vectors):
    index = VectorIndex(IndexConfig(kind="ivf", ivf_nlist=32, nprobe=1)).build(vectors)
    queries = vectors[::50]
    truth = brute_force(vectors, queries, 10)

    def recall() -> float:
        ids = index.search(queries, 10)[1]
        return float(np.mean([len(set(a) & set(b)) for a, b in zip(ids, truth, strict=True)]))

    low = recall()
    index.set_search(nprobe=32)
    assert recall() >= low
    assert recall() == 10.0  # all cells visited: exact


def test_clear_errors(vectors, tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        VectorIndex().search(vectors[:1], 3)
    index = VectorIndex(IndexConfig(kind="flat")).build(vectors)
    with pytest.raises(ConfigError, match="width"):
        index.search(np.zeros((1, 5), np.float32), 3)
    with pytest.raises(ConfigError, match="no vector index"):
        VectorIndex.load(tmp_path / "missing.faiss")


def test_vectors_are_kept(vectors):
    for kind in ("flat", "hnsw", "ivf"):
        index = VectorIndex(IndexConfig(kind=kind, ivf_nlist=8)).build(vectors[:300])
        np.testing.assert_allclose(index.vectors(), vectors[:300], atol=1e-6)
