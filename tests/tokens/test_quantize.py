"""Semantic IDs: RQ-KMeans and RQ-VAE codes, de-duplication, diagnostics, mapping tables."""

import math

import numpy as np
import pandas as pd
import pytest

from llmrec.errors import DataError
from llmrec.paradigms.tokens.quantize import (
    RQVAE,
    RQKMeans,
    SemanticIDs,
    dedup_digit,
    default_codebook_size,
    diagnose,
    kmeans,
)


def clustered(n_clusters: int = 8, per: int = 25, dim: int = 16, seed: int = 0):
    """Points around ``n_clusters`` well-separated unit centres; returns (x, cluster labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)) * 5
    labels = np.repeat(np.arange(n_clusters), per)
    x = centres[labels] + 0.1 * rng.standard_normal((len(labels), dim))
    return x.astype(np.float32), labels


def purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose code's majority label is their own label."""
    hits = 0
    for code in np.unique(codes):
        members = labels[codes == code]
        hits += np.bincount(members).max()
    return hits / len(labels)


def test_default_codebook_size_grows_with_the_catalogue_and_is_clipped():
    assert default_codebook_size(1682, 3) == 32
    assert default_codebook_size(10, 3) == 8
    assert default_codebook_size(10_000_000, 3) == 256


def test_dedup_digit_counts_within_groups_in_item_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    np.testing.assert_array_equal(dedup_digit(codes), [0, 0, 1, 2, 0])


def test_rq_kmeans_first_level_recovers_clusters_and_ids_are_unique():
    x, labels = clustered()
    ids = RQKMeans(levels=2, codebook_size=8, normalize=False).fit(x)
    assert ids.codes.shape == (len(x), 3)
    assert len({tuple(r) for r in ids.codes.tolist()}) == len(x)
    assert purity(ids.codes[:, 0], labels) > 0.95
    assert ids.codes[:, :2].max() < 8
    assert ids.vocab_sizes[:2] == [8, 8]


def test_rq_kmeans_is_deterministic_in_its_seed():
    x, _ = clustered()
    a = RQKMeans(levels=2, codebook_size=8, seed=3).fit(x)
    b = RQKMeans(levels=2, codebook_size=8, seed=3).fit(x)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_more_levels_reconstruct_better():
    x, _ = clustered(per=40)
    errors = [RQKMeans(levels=lv, codebook_size=8).fit(x).diagnostics.recon_rel for lv in (1, 3)]
    assert errors[1] < errors[0]


def test_balanced_kmeans_respects_capacity():
    rng = np.random.default_rng(1)
    # a lopsided cloud: plain k-means would give the dense blob most points
    x = np.concatenate([rng.normal(0, 0.05, (90, 4)), rng.normal(3, 1.0, (10, 4))])
    _, labels = kmeans(x, 10, balanced=True, rng=rng)
    assert np.bincount(labels, minlength=10).max() <= math.ceil(len(x) / 10)


def test_diagnostics_match_a_hand_computed_example():
    codes = np.array([[0, 1], [0, 1], [1, 0], [2, 0]])
    diag = diagnose(codes, 4, np.ones((4, 2)), np.zeros((4, 2)))
    assert diag.collision_rate == pytest.approx(0.5)  # two of four items share (0, 1)
    assert diag.unique_tuples == 3 and diag.max_collisions == 2
    assert diag.usage == [0.75, 0.5]
    assert diag.dead_codes == [1, 2]
    assert diag.entropy_bits[0] == pytest.approx(1.5)  # p = (.5, .25, .25)
    assert diag.entropy_bits[1] == pytest.approx(1.0)
    assert diag.recon_rel == pytest.approx(1.0)


def test_nan_vectors_are_a_data_error():
    x = np.ones((4, 3))
    x[1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        RQKMeans(levels=1, codebook_size=2).fit(x)


def test_mapping_table_round_trips_and_joins(tmp_path):
    x, _ = clustered(n_clusters=4, per=10)
    item_ids = np.array([f"m{i}" for i in range(len(x))], dtype=object)
    ids = RQKMeans(levels=2, codebook_size=4).fit(x, item_ids)
    folder = ids.save(tmp_path / "ids")
    assert (folder / "semantic_ids.csv").is_file()
    loaded = SemanticIDs.load(folder)
    np.testing.assert_array_equal(loaded.codes, ids.codes)
    assert loaded.diagnostics == ids.diagnostics
    for a, b in zip(loaded.codebooks, ids.codebooks, strict=True):
        np.testing.assert_allclose(a, b)
    # an existing pipeline joins its own table on item_id
    events = pd.DataFrame({"item_id": ["m3", "m0", "m3"], "clicks": [1, 2, 3]})
    table = pd.read_csv(folder / "semantic_ids.csv", dtype={"item_id": str})
    joined = events.merge(table, on="item_id", how="left")
    assert joined["semantic_id"].notna().all()
    assert joined["semantic_id"].iloc[0] == "-".join(map(str, ids.codes[3]))


def test_loading_a_folder_without_ids_says_so(tmp_path):
    with pytest.raises(DataError, match="no semantic IDs"):
        SemanticIDs.load(tmp_path)


def test_rq_vae_gives_unique_ids_and_uses_its_codebooks():
    x, labels = clustered(n_clusters=8, per=20)
    ids = RQVAE(levels=2, codebook_size=8, epochs=30, latent_dim=8, hidden_dim=32).fit(x)
    assert ids.method == "rq-vae"
    assert len({tuple(r) for r in ids.codes.tolist()}) == len(x)
    diag = ids.diagnostics
    assert diag.usage[0] >= 0.75, "k-means init and dead-code reset keep level 1 alive"
    assert diag.recon_rel < 1.0
    assert "dead_code_resets" in diag.extra
    assert purity(ids.codes[:, 0], labels) > 0.6


def test_rq_vae_dead_code_reset_revives_codes():
    # far more codes than clusters: without resets many codes stay dead
    x, _ = clustered(n_clusters=3, per=30)
    common = {"levels": 1, "codebook_size": 16, "epochs": 40, "latent_dim": 4, "hidden_dim": 16}
    no_reset = RQVAE(**common, reset_every=0).fit(x).diagnostics
    with_reset = RQVAE(**common, reset_every=5).fit(x).diagnostics
    assert with_reset.extra["dead_code_resets"] > 0
    assert with_reset.dead_codes[0] <= no_reset.dead_codes[0]


def test_collaborative_factors_are_appended_unit_scaled_and_zero_for_unseen_items():
    from llmrec.paradigms.tokens._ids import with_collaborative
    from llmrec.testing import tiny_dataset

    data = tiny_dataset(n_items=31)  # the generator never uses the last item
    text = np.random.default_rng(0).standard_normal((31, 16))
    out = with_collaborative(text, data, 0.5, 4, seed=0)
    assert out.shape == (31, 16 + 4)
    np.testing.assert_allclose(np.linalg.norm(out[:, :16], axis=1), 1.0, rtol=1e-5)
    seen = data.item_popularity() > 0
    assert not seen[30] and seen[:30].all()
    np.testing.assert_allclose(np.linalg.norm(out[seen, 16:], axis=1), 0.5, rtol=1e-5)
    assert not out[~seen, 16:].any()


def test_collaborative_factors_put_co_consumed_items_under_one_first_code():
    from llmrec.paradigms.tokens._ids import with_collaborative
    from llmrec.testing import tiny_dataset

    data = tiny_dataset(n_items=30)  # even users take items 0-14, odd users items 15-29
    text = np.random.default_rng(0).standard_normal((30, 16))  # text says nothing of that
    half = np.arange(30) < 15

    def purity(vectors: np.ndarray) -> float:
        codes = RQKMeans(levels=1, codebook_size=2, seed=0).fit(vectors).codes[:, 0]
        return max(float(np.mean(codes == half)), float(np.mean(codes != half)))

    assert purity(with_collaborative(text, data, 3.0, 2, seed=0)) == 1.0
    assert purity(text) < 0.9
