"""The sentence-transformers backend on all-MiniLM-L6-v2 (slow: loads a real model)."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.errors import BackendError, ConfigError
from llmrec.lm.base import LanguageModel

pytestmark = pytest.mark.slow


def test_encode_shape_and_norm(minilm: LanguageModel) -> None:
    vecs = minilm.encode(["Toy Story (1995)", "GoldenEye (1995)"])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_similar_titles_are_closer(minilm: LanguageModel) -> None:
    a, b, c = minilm.encode(
        ["Star Wars (1977)", "Return of the Jedi (1983)", "Sense and Sensibility"]
    )
    assert a @ b > a @ c


def test_matches_sentence_transformers_encode(minilm: LanguageModel) -> None:
    texts = ["a short one", "a somewhat longer text about a film with several words in it", "x"]
    ours = minilm.encode(texts, batch_size=2)
    theirs = minilm.model.encode(texts, normalize_embeddings=True)  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_truncation_counted(minilm: LanguageModel) -> None:
    before = minilm.stats.truncated
    minilm.encode(["word " * 600, "short"])
    assert minilm.stats.truncated == before + 1


def test_other_verbs_raise(minilm: LanguageModel) -> None:
    with pytest.raises(BackendError):
        minilm.generate(["hi"])
    with pytest.raises(ConfigError):
        minilm.encode(["x"], pooling="last")
