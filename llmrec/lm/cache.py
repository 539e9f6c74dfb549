"""A disk cache in front of any language model: answers persist across runs and interruptions.

:class:`CachedLM` keeps one SQLite file (WAL mode) of ``sha256(key) -> bytes``. Keys hold the
model id, the verb, its parameters and the input text, so a different model, pooling or label
set never reads another's answers. Work is sent to the wrapped model in chunks and each chunk is
committed as soon as it returns: an interrupted run resumes from what was cached, and a chunk
whose call failed stores nothing.

Nothing poisoned is kept. Each chunk is checked before it is stored (finite numbers of the
expected shape, log-probabilities <= 0: :func:`~llmrec.lm.base.check_logprobs` and friends), so
a backend's NaN or infinity is a :class:`~llmrec.errors.BackendError` and no row; each row read
back is checked again, and one that fails (written by an older llmrec, or damaged) counts as
missing and is computed afresh. A cache file SQLite cannot read (not a database, truncated,
garbage) is renamed to ``<name>.corrupt-<time>`` with a one-line warning saying where, and a
fresh cache takes its place; a folder where no cache can be written is a :class:`CacheError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from llmrec.errors import BackendError, LlmrecError
from llmrec.lm.base import (
    MAX_LOGPROB,
    LanguageModel,
    Pooling,
    check_logprobs,
    check_texts,
    check_vectors,
)

__all__ = ["DB_NAME", "CacheError", "CachedLM"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the SQLite file inside the cache folder
DB_NAME = "lm-cache.sqlite"
#: SQLite's primary result codes for a file that is damaged or not a database at all
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class CacheError(LlmrecError):
    """The LM disk cache cannot be used (unwritable folder, read-only file, full disk): the
    message names the file and what to do."""


def _key(*parts: object) -> str:
    raw = json.dumps([str(p) if not isinstance(p, list | tuple) else list(p) for p in parts])
    return hashlib.sha256(raw.encode()).hexdigest()


def _damaged(exc: sqlite3.Error) -> bool:
    # extended codes (SQLITE_CORRUPT_INDEX...) keep the primary code in their low byte
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _DAMAGED


def _connect(path: Path) -> sqlite3.Connection:
    """A connection with the table in place; reading its first row makes a garbage or
    truncated header fail here rather than in the middle of a run."""
    db = sqlite3.connect(path, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value BLOB)")
        db.execute("SELECT key FROM answers LIMIT 1").fetchall()
        db.commit()
    except BaseException:
        db.close()
        raise
    return db


def _floats(value: bytes) -> np.ndarray | None:
    """The float32 row stored as ``value``, or ``None`` when its length is not whole floats."""
    if len(value) % 4:
        return None
    return np.frombuffer(value, dtype=np.float32)


def _vector_row(value: bytes) -> bool:
    row = _floats(value)
    return row is not None and len(row) > 0 and bool(np.isfinite(row).all())


def _logprob_row(n: int) -> Callable[[bytes], bool]:
    def valid(value: bytes) -> bool:
        row = _floats(value)
        return (
            row is not None
            and len(row) == n
            and bool(np.isfinite(row).all() and (row <= MAX_LOGPROB).all())
        )

    return valid


def _text_row(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


class CachedLM(LanguageModel):
    """Wraps ``inner`` so every answer is read from, or written to, ``cache_dir``.

    Only inputs not in the cache reach ``inner``; ``stats`` is the inner model's, with
    ``cache_hits`` counting answers read from disk (one per text, prompt or continuation),
    ``extra["cache_rows_refused"]`` rows read back that failed their check (computed again)
    and ``extra["cache_set_aside"]`` damaged cache files renamed (see the module docstring;
    :attr:`set_aside` is the last one's new path).

    Args:
        inner: any backend.
        cache_dir: folder of the SQLite file (created if missing).
        chunk_size: inputs sent to ``inner`` per call and committed together.

    Raises:
        CacheError: the folder or file cannot be written.

    Example::

        lm = CachedLM(FakeLM(), "/tmp/lmcache")
        lm.encode(["a", "b"]); lm.encode(["a", "b"]); lm.stats.cache_hits   # 2
    """

    counts_calls = False  # only the calls that reach ``inner`` count, and ``inner`` counts them

    def __init__(self, inner: LanguageModel, cache_dir: str | Path, *, chunk_size: int = 256):
        super().__init__()
        self.inner = inner
        self.stats = inner.stats
        self._stats_lock = inner._stats_lock  # one counter, one lock
        self.model_id = inner.model_id
        self.chunk_size = chunk_size
        self.path = Path(cache_dir) / DB_NAME
        self.set_aside: Path | None = None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = self._open()

    # --- the file ------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """Connect, setting a damaged file aside (once) for a fresh one."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return _connect(self.path)
        except OSError as exc:
            raise self._unusable(exc) from None
        except sqlite3.Error as exc:
            if not _damaged(exc):
                raise self._unusable(exc) from None
            self._set_aside(exc)
        try:
            return _connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: BaseException) -> CacheError:
        return CacheError(
            f"LM cache {self.path} cannot be used ({exc}): give a writable lm_cache_dir, or set "
            "LLMREC_HOME to a writable folder"
        )

    def _set_aside(self, exc: sqlite3.Error) -> None:
        """Rename the damaged file (with its WAL and index, which belong to it) and say where."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.rename(f"{target}{suffix}")
        except OSError as err:
            raise self._unusable(err) from None
        self.set_aside = target
        self._count(cache_set_aside=1)
        log.warning(
            "llmrec: warning: LM cache %s is damaged (%s); moved it to %s and started a fresh "
            "cache",
            self.path,
            exc,
            target,
        )

    def _with_db(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op(connection)`` under the lock. A file found damaged only now (opening reads a
        few pages; garbage further in shows on the lookup that reads it) is set aside and ``op``
        runs again on a fresh cache; any other SQLite failure (full disk, read-only file) is a
        :class:`CacheError`."""
        with self._lock:
            if self._db is None:
                raise RuntimeError("CachedLM is closed")
            try:
                return op(self._db)
            except sqlite3.Error as exc:
                if not _damaged(exc):
                    raise self._unusable(exc) from None
                self._db.close()
                self._db = None
                self._set_aside(exc)
            self._db = self._open()
            try:
                return op(self._db)
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None

    # --- storage -------------------------------------------------------------------------------
    def _get(self, keys: Sequence[str]) -> dict[str, bytes]:
        def read(db: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for start in range(0, len(keys), 500):  # SQLite limits bound parameters
                part = list(keys[start : start + 500])
                marks = ",".join("?" * len(part))
                rows = db.execute(f"SELECT key, value FROM answers WHERE key IN ({marks})", part)
                found.update(rows.fetchall())
            return found

        return self._with_db(read)

    def _put(self, items: dict[str, bytes]) -> None:
        def write(db: sqlite3.Connection) -> None:
            with db:  # one transaction: rolled back on failure
                db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)", items.items())

        self._with_db(write)

    def __len__(self) -> int:
        return self._with_db(
            lambda db: int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        )

    def _lookup(self, keys: Sequence[str], valid: Callable[[bytes], bool]) -> dict[str, bytes]:
        """The stored rows of ``keys`` that pass ``valid``; the others count as missing."""
        stored = self._get(list(dict.fromkeys(keys)))
        found = {k: v for k, v in stored.items() if valid(v)}
        if len(found) < len(stored):
            self._count(cache_rows_refused=len(stored) - len(found))
        return found

    def _fill(
        self,
        keys: Sequence[str],
        found: dict[str, bytes],
        compute: Callable[[list[int]], list[bytes]],
        chunk: int,
    ) -> list[bytes]:
        """Value per key: ``found``, or computed for missing positions chunk by chunk."""
        missing = [i for i, k in enumerate(keys) if k not in found]
        # the same input twice in one call is computed once
        first_of: dict[str, int] = {}
        todo = [i for i in missing if first_of.setdefault(keys[i], i) == i]
        self._count(cache_hits=len(keys) - len(missing))
        for start in range(0, len(todo), chunk):
            idx = todo[start : start + chunk]
            values = compute(idx)  # checks, and raises before anything of this chunk is stored
            fresh = {keys[i]: v for i, v in zip(idx, values, strict=True)}
            self._put(fresh)
            found.update(fresh)
        return [found[k] for k in keys]

    def _cached_map(
        self,
        keys: Sequence[str],
        compute: Callable[[list[int]], list[bytes]],
        chunk: int,
        valid: Callable[[bytes], bool],
    ) -> list[bytes]:
        """Value per key: read from disk when it passes ``valid``, else computed."""
        return self._fill(keys, self._lookup(keys, valid), compute, chunk)

    # --- protocol ------------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """As the inner model; each text's vector is cached on its own. Vectors that are not
        finite, or not as wide as those already cached for this model, raise BackendError."""
        keys = [_key(self.model_id, "encode", pooling, t) for t in texts]
        found = self._lookup(keys, _vector_row)
        widths = {len(v) // 4 for v in found.values()}
        if len(widths) > 1:
            raise BackendError(
                f"{self.path} holds vectors of widths {sorted(widths)} for {self.model_id}: "
                "the model behind this id changed; give it a new model_id or remove the cache"
            )
        dim = widths.pop() if widths else None

        def compute(idx: list[int]) -> list[bytes]:
            nonlocal dim
            answer = self.inner.encode(
                [texts[i] for i in idx], batch_size=batch_size, pooling=pooling
            )
            vecs = check_vectors(answer, len(idx), f"{self.model_id} encode", dim=dim)
            dim = vecs.shape[1]
            return [v.tobytes() for v in vecs]

        values = self._fill(keys, found, compute, self.chunk_size)
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
            answer = self.inner.generate(
                [prompts[i] for i in idx],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                stop=stop,
                seed=seed,
            )
            texts = check_texts(answer, len(idx), f"{self.model_id} generate")
            return [t.encode() for t in texts]

        values = self._cached_map(keys, compute, self.chunk_size, _text_row)
        return [v.decode() for v in values]

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        return self.score_next_batch([prompt], labels)[0]

    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """As the inner model; each prompt's row is cached, keyed by the label list too."""
        keys = [_key(self.model_id, "score_next", list(labels), p) for p in prompts]

        def compute(idx: list[int]) -> list[bytes]:
            answer = self.inner.score_next_batch([prompts[i] for i in idx], labels)
            shape = (len(idx), len(labels))
            rows = check_logprobs(answer, shape, f"{self.model_id} score_next")
            return [r.tobytes() for r in rows]

        values = self._cached_map(keys, compute, self.chunk_size, _logprob_row(len(labels)))
        if not values:
            return np.zeros((0, len(labels)), dtype=np.float32)
        return np.stack([np.frombuffer(v, dtype=np.float32) for v in values])

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """As the inner model; each (prompt, continuation) score is cached on its own, and the
        uncached continuations go to the inner model in one call (sharing its prompt cache)."""
        keys = [_key(self.model_id, "loglikelihood", prompt, c) for c in continuations]

        def compute(idx: list[int]) -> list[bytes]:
            answer = self.inner.loglikelihood(prompt, [continuations[i] for i in idx])
            scores = check_logprobs(answer, (len(idx),), f"{self.model_id} loglikelihood")
            return [s.tobytes() for s in scores]

        values = self._cached_map(keys, compute, max(1, len(continuations)), _logprob_row(1))
        return np.array([np.frombuffer(v, dtype=np.float32)[0] for v in values], np.float32)

    def loglikelihood_batch(
        self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """As the inner model; each (prompt, continuation) score is cached on its own (the keys
        of :meth:`loglikelihood`, so either verb reads the other's answers), and every uncached
        row of every prompt goes to the inner model in one batched call."""
        if len(prompts) != len(continuations):
            raise BackendError(
                f"{len(prompts)} prompt(s) but {len(continuations)} continuation list(s)"
            )
        rows = [(i, c) for i, conts in enumerate(continuations) for c in conts]
        keys = [_key(self.model_id, "loglikelihood", prompts[i], c) for i, c in rows]

        def compute(idx: list[int]) -> list[bytes]:
            wanted: dict[int, list[int]] = {}  # prompt -> positions in ``rows``, in order
            for j in idx:
                wanted.setdefault(rows[j][0], []).append(j)
            answer = self.inner.loglikelihood_batch(
                [prompts[i] for i in wanted], [[rows[j][1] for j in js] for js in wanted.values()]
            )
            if len(answer) != len(wanted):
                raise BackendError(
                    f"{self.model_id} loglikelihood answered {len(answer)} list(s) for "
                    f"{len(wanted)} prompt(s)"
                )
            got: dict[int, bytes] = {}
            for js, scores in zip(wanted.values(), answer, strict=True):
                checked = check_logprobs(scores, (len(js),), f"{self.model_id} loglikelihood")
                got.update((j, s.tobytes()) for j, s in zip(js, checked, strict=True))
            return [got[j] for j in idx]

        values = self._cached_map(keys, compute, max(1, len(keys)), _logprob_row(1))
        flat = np.array([np.frombuffer(v, dtype=np.float32)[0] for v in values], np.float32)
        ends = np.cumsum([len(c) for c in continuations])
        return [part.copy() for part in np.split(flat, ends[:-1])] if len(prompts) else []

    # --- pass-through --------------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    @property
    def context_length(self) -> int:
        return self.inner.context_length

    @property
    def has_chat_template(self) -> bool:
        return self.inner.has_chat_template

    @property
    def answers_remotely(self) -> bool:
        return self.inner.answers_remotely

    def apply_chat_template(self, prompt: str) -> str:
        return self.inner.apply_chat_template(prompt)

    def close(self) -> None:
        """Close the database and the inner model; safe to call twice."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        self.inner.close()
