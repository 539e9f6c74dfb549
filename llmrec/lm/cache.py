"""A disk cache in front of any language model: answers persist across runs and interruptions.

:class:`CachedLM` keeps one SQLite file (WAL mode) of ``sha256(key) -> bytes``. Keys hold the
model id, the verb, its parameters and the input text, so a different model, pooling or label
set never reads another's answers. Work is sent to the wrapped model in chunks and each chunk is
committed as soon as it returns: an interrupted run resumes from what was cached, and a chunk
whose call failed stores nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from llmrec.lm.base import LanguageModel, Pooling

#: the SQLite file inside the cache folder
DB_NAME = "lm-cache.sqlite"


def _key(*parts: object) -> str:
    raw = json.dumps([str(p) if not isinstance(p, list | tuple) else list(p) for p in parts])
    return hashlib.sha256(raw.encode()).hexdigest()


class CachedLM(LanguageModel):
    """Wraps ``inner`` so every answer is read from, or written to, ``cache_dir``.

    Only inputs not in the cache reach ``inner``; ``stats`` is the inner model's, with
    ``cache_hits`` counting answers read from disk (one per text, prompt or continuation).

    Args:
        inner: any backend.
        cache_dir: folder of the SQLite file (created if missing).
        chunk_size: inputs sent to ``inner`` per call and committed together.

    Example::

        lm = CachedLM(FakeLM(), "/tmp/lmcache")
        lm.encode(["a", "b"]); lm.encode(["a", "b"]); lm.stats.cache_hits   # 2
    """

    def __init__(self, inner: LanguageModel, cache_dir: str | Path, *, chunk_size: int = 256):
        super().__init__()
        self.inner = inner
        self.stats = inner.stats
        self.model_id = inner.model_id
        self.chunk_size = chunk_size
        self.path = Path(cache_dir) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value BLOB)")
        self._db.commit()

    # --- storage -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("CachedLM is closed")
        return self._db

    def _get(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self._lock:
            db = self._conn()
            for start in range(0, len(keys), 500):  # SQLite limits bound parameters
                part = list(keys[start : start + 500])
                marks = ",".join("?" * len(part))
                rows = db.execute(f"SELECT key, value FROM answers WHERE key IN ({marks})", part)
                found.update(rows.fetchall())
        return found

    def _put(self, items: dict[str, bytes]) -> None:
        with self._lock:
            db = self._conn()
            db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)", items.items())
            db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def _cached_map(
        self,
        keys: Sequence[str],
        compute: Callable[[list[int]], list[bytes]],
        chunk: int,
    ) -> list[bytes]:
        """Value per key: read from disk, or computed for missing positions chunk by chunk."""
        found = self._get(list(dict.fromkeys(keys)))
        missing = [i for i, k in enumerate(keys) if k not in found]
        # the same input twice in one call is computed once
        first_of: dict[str, int] = {}
        todo = [i for i in missing if first_of.setdefault(keys[i], i) == i]
        self.stats.cache_hits += len(keys) - len(missing)
        for start in range(0, len(todo), chunk):
            idx = todo[start : start + chunk]
            values = compute(idx)  # raises before anything of this chunk is stored
            fresh = {keys[i]: v for i, v in zip(idx, values, strict=True)}
            self._put(fresh)
            found.update(fresh)
        return [found[k] for k in keys]

    # --- protocol ------------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """As the inner model; each text's vector is cached on its own."""
        keys = [_key(self.model_id, "encode", pooling, t) for t in texts]

        def compute(idx: list[int]) -> list[bytes]:
            vecs = self.inner.encode(
                [texts[i] for i in idx], batch_size=batch_size, pooling=pooling
            )
            return [np.asarray(v, dtype=np.float32).tobytes() for v in vecs]

        values = self._cached_map(keys, compute, self.chunk_size)
        if not values:
            return self.inner.encode([], batch_size=batch_size, pooling=pooling)
        return np.stack([np.frombuffer(v, dtype=np.float32) for v in values])

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """As the inner model; keyed by prompt and every decoding parameter."""
        params = [max_new_tokens, temperature, list(stop), seed]
        keys = [_key(self.model_id, "generate", params, p) for p in prompts]

        def compute(idx: list[int]) -> list[bytes]:
            texts = self.inner.generate(
                [prompts[i] for i in idx],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                stop=stop,
                seed=seed,
            )
            return [t.encode() for t in texts]

        return [v.decode() for v in self._cached_map(keys, compute, self.chunk_size)]

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        return self.score_next_batch([prompt], labels)[0]

    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """As the inner model; each prompt's row is cached, keyed by the label list too."""
        keys = [_key(self.model_id, "score_next", list(labels), p) for p in prompts]

        def compute(idx: list[int]) -> list[bytes]:
            rows = self.inner.score_next_batch([prompts[i] for i in idx], labels)
            return [np.asarray(r, dtype=np.float32).tobytes() for r in rows]

        values = self._cached_map(keys, compute, self.chunk_size)
        if not values:
            return np.zeros((0, len(labels)), dtype=np.float32)
        return np.stack([np.frombuffer(v, dtype=np.float32) for v in values])

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """As the inner model; each (prompt, continuation) score is cached on its own, and the
        uncached continuations go to the inner model in one call (sharing its prompt cache)."""
        keys = [_key(self.model_id, "loglikelihood", prompt, c) for c in continuations]

        def compute(idx: list[int]) -> list[bytes]:
            scores = self.inner.loglikelihood(prompt, [continuations[i] for i in idx])
            return [np.float32(s).tobytes() for s in scores]

        values = self._cached_map(keys, compute, max(1, len(continuations)))
        return np.array([np.frombuffer(v, dtype=np.float32)[0] for v in values], np.float32)

    # --- pass-through --------------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    @property
    def context_length(self) -> int:
        return self.inner.context_length

    @property
    def has_chat_template(self) -> bool:
        return self.inner.has_chat_template

    def apply_chat_template(self, prompt: str) -> str:
        return self.inner.apply_chat_template(prompt)

    def close(self) -> None:
        """Close the database and the inner model; safe to call twice."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        self.inner.close()
