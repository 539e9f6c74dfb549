"""Micro-batching: requests that arrive close together share one model call.

One :class:`MicroBatcher` per served model. Requests wait in a bounded queue; a worker takes
the first, then (for models that call an LM) waits up to ``window_s`` for more, up to
``max_batch``, and runs the batch in a worker thread — one model call, so concurrent requests
cost one forward pass. Models without an LM take whatever is queued when they are free, without
waiting: under load, batches form by themselves.

Bounds, so that overload is visible rather than an unbounded wait:

* a full queue refuses at once (:class:`Overloaded`, which the HTTP layer turns into 503 with
  ``Retry-After``);
* with a ``budget_s`` and a ``fallback``, a batch whose call fails or takes longer than the
  budget is answered by ``fallback`` instead (the direct paradigm's retriever), and the late
  call's result is dropped. A batch still waiting for the busy worker thread when its budget
  ends is cancelled before it starts, so a slow LM sheds load instead of piling it up;
* after ``breaker_failures`` such batches in a row, the model is skipped for
  ``breaker_cooldown_s`` (answers come from ``fallback`` at once), then tried again.

A late call cannot be stopped: it keeps the model's thread until it returns, and batches meanwhile
fall back. Recovery therefore rests on every LM call being bounded — ``OpenAILM``'s ``timeout_s``
is a deadline for each request, retries included — so once the LM server answers again, the
thread frees itself within that deadline and the next batch reaches the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["BatchStats", "MicroBatcher", "Overloaded"]

Q = TypeVar("Q")
A = TypeVar("A")


class Overloaded(Exception):
    """The queue is full; retry after ``retry_after_s``."""

    def __init__(self, name: str, retry_after_s: int) -> None:
        super().__init__(f"{name} is busy: its request queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Pending(Generic[Q, A]):
    query: Q
    future: asyncio.Future[tuple[A, dict[str, float]]]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What happened to one batch (passed to the ``on_batch`` hook)."""

    size: int
    seconds: float
    fallback_reason: str = ""
    #: why the fallback answered: ``timeout``, ``error`` or ``breaker`` (``""``: it did not)
    fallback_kind: str = ""


class MicroBatcher(Generic[Q, A]):
    """Batch ``run(list[Q]) -> list[A]`` calls over concurrent :meth:`submit` calls.

    Args:
        name: for messages.
        run: answers a batch (blocking; runs in ``executor``).
        executor: where ``run`` runs (one thread per model: models are not re-entrant).
        window_s: how long a batch's first request waits for company (0: no waiting).
        max_batch: most queries per call.
        max_queue: most queries waiting; more raise :class:`Overloaded`.
        budget_s: the longest a batch may take before ``fallback`` answers it.
        fallback: ``(queries, reason) -> answers`` used on failure or timeout; runs in
            ``fallback_executor`` (default: the event loop's), never behind the model's own
            busy thread. Without one, failures reach the callers as exceptions.
        on_batch: called after each batch (metrics).
        breaker_failures: after this many failed or late batches in a row (0: never), batches
            go straight to ``fallback`` for ``breaker_cooldown_s``; the next batch after that
            tries the model again (a circuit breaker: a dead backend costs one timeout, not one
            per request).
    """

    def __init__(
        self,
        name: str,
        run: Callable[[list[Q]], list[A]],
        *,
        executor: Executor,
        window_s: float = 0.0,
        max_batch: int = 8,
        max_queue: int = 64,
        budget_s: float | None = None,
        fallback: Callable[[list[Q], str], list[A]] | None = None,
        fallback_executor: Executor | None = None,
        on_batch: Callable[[BatchStats], None] = lambda _s: None,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 5.0,
    ) -> None:
        self.name = name
        self._run = run
        self._executor = executor
        self._window_s = window_s
        self._max_batch = max_batch
        self._budget_s = budget_s
        self._fallback = fallback
        self._fallback_executor = fallback_executor
        self._on_batch = on_batch
        self._breaker_failures = breaker_failures
        self._breaker_cooldown_s = breaker_cooldown_s
        self._failures = 0
        self._open_until = 0.0
        self._last_failure = ""
        self._max_queue = max_queue
        self._queue: asyncio.Queue[_Pending[Q, A]] = asyncio.Queue(maxsize=max_queue)
        self._worker: asyncio.Task[None] | None = None
        self._loop_of_worker: asyncio.AbstractEventLoop | None = None

    @property
    def depth(self) -> int:
        """Queries waiting now."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the worker on the running event loop (again, if an earlier loop is gone: a
        test client without its lifespan runs every request on a new loop)."""
        loop = asyncio.get_running_loop()
        if self._worker is not None and self._loop_of_worker is loop:
            return
        if self._loop_of_worker is not loop:
            self._queue = asyncio.Queue(maxsize=self._max_queue)  # a queue belongs to one loop
        self._loop_of_worker = loop
        self._worker = loop.create_task(self._loop())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(self, query: Q) -> tuple[A, dict[str, float]]:
        """The answer to ``query`` and its timings (``queue_ms``)."""
        self.start()
        pending: _Pending[Q, A] = _Pending(query, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise Overloaded(self.name, retry_after_s=1) from None
        return await pending.future

    # --- the worker --------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await self._gather(batch)
            await self._serve(batch)

    async def _gather(self, batch: list[_Pending[Q, A]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window_s
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                return

    async def _call(
        self, queries: list[Q]
    ) -> tuple[list[A] | None, BaseException | None, str, str]:
        """(answers, error, reason, kind): the model's answers, or why there are none (``kind``
        is ``timeout``, ``error`` or ``breaker``)."""
        if self._fallback is not None and time.monotonic() < self._open_until:
            # the breaker is open: do not wait on a backend that has just failed repeatedly
            reason = f"{self._last_failure} (skipped after repeated failures)"
            return None, None, reason, "breaker"
        call = asyncio.get_running_loop().run_in_executor(self._executor, self._run, queries)
        try:
            answers = await asyncio.wait_for(call, self._budget_s) if self._budget_s else await call
        except TimeoutError:
            reason = f"LM exceeded its time budget of {1000 * (self._budget_s or 0):.0f} ms"
            self._failed(reason)
            return None, None, reason, "timeout"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the model's failure: fall back, or report it to the callers
            reason = f"LM backend failed: {_one_line(exc)}"
            self._failed(reason)
            return None, exc, reason, "error"
        self._failures = 0
        return answers, None, "", ""

    def _failed(self, reason: str) -> None:
        self._failures += 1
        self._last_failure = reason
        if self._breaker_failures and self._failures >= self._breaker_failures:
            self._open_until = time.monotonic() + self._breaker_cooldown_s

    async def _serve(self, batch: list[_Pending[Q, A]]) -> None:
        loop = asyncio.get_running_loop()
        live = [p for p in batch if not p.future.done()]  # a caller may have gone away
        if not live:
            return
        queries = [p.query for p in live]
        started = time.perf_counter()
        answers, error, reason, kind = await self._call(queries)
        if answers is None and self._fallback is not None:
            try:
                answers = await loop.run_in_executor(
                    self._fallback_executor, self._fallback, queries, reason
                )
                error = None
            except Exception as exc:
                error = exc
        seconds = time.perf_counter() - started
        fell_back = answers is not None and bool(kind)
        self._on_batch(
            BatchStats(len(live), seconds, reason if fell_back else "", kind if fell_back else "")
        )
        for i, pending in enumerate(live):
            if pending.future.done():
                continue
            if answers is None:
                pending.future.set_exception(error or RuntimeError(reason))
                continue
            queue_ms = 1000.0 * (started - pending.enqueued)
            pending.future.set_result((answers[i], {"queue_ms": queue_ms}))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
