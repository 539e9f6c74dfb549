"""Encoding through the LM protocol: unit vectors, truncation counts, disk cache, resumption."""

import numpy as np
import pytest

from llmrec.errors import BackendError
from llmrec.lm.cache import CachedLM
from llmrec.lm.fake import FakeLM
from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder, encode_items
from llmrec.paradigms.embeddings.knn import TextKNNConfig
from llmrec.testing import tiny_dataset


def test_vectors_are_unit_and_match_the_backend():
    lm = FakeLM(dim=12)
    texts = ["star wars", "star trek", "toy story"]
    vecs, info = TextEncoder(EncoderConfig(encoder="fake:12"), lm=lm).encode(texts)
    assert vecs.shape == (3, 12) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vecs, lm.encode(texts), atol=1e-6)
    assert info.n_texts == 3 and info.n_truncated == 0


def test_truncation_is_reported():
    settings = EncoderConfig(encoder="fake:8", max_tokens=3)
    _, info = TextEncoder(settings).encode(["a b c d e", "a b", "x y z w"])
    assert info.n_truncated == 2


def test_pooling_reaches_the_backend():
    base = TextEncoder(EncoderConfig(encoder="fake:8")).encode(["a b c"])[0]
    last = TextEncoder(EncoderConfig(encoder="fake:8", pooling="last")).encode(["a b c"])[0]
    assert not np.allclose(base, last)


def test_chunks_are_cached_and_an_interrupted_encode_resumes(tmp_path):
    texts = [f"item number {i}" for i in range(10)]
    failing = CachedLM(FakeLM(dim=8, fail_after=2), tmp_path, chunk_size=4)
    enc = TextEncoder(EncoderConfig(encoder="fake:8", chunk_size=4), lm=failing)
    with pytest.raises(BackendError):
        enc.encode(texts)
    fresh = CachedLM(FakeLM(dim=8), tmp_path, chunk_size=4)
    vecs, info = TextEncoder(EncoderConfig(encoder="fake:8", chunk_size=4), lm=fresh).encode(texts)
    assert info.cache_hits == 8  # the two chunks done before the failure
    np.testing.assert_allclose(vecs, FakeLM(dim=8).encode(texts), atol=1e-6)


def test_encoder_is_one_config_value():
    data = tiny_dataset()
    a, _ = encode_items(TextKNNConfig(encoder="fake:8"), data)
    b, _ = encode_items(TextKNNConfig(encoder="fake:16"), data)
    assert a.shape == (data.n_items, 8) and b.shape == (data.n_items, 16)
