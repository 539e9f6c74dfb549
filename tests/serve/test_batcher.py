"""The micro-batcher: batching in time, bounds, budget and failure fallbacks."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from llmrec.serve.batcher import BatchStats, MicroBatcher, Overloaded


class Recorder:
    """A ``run`` that records its batches; optionally slow or failing."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.fail = fail
        self.release = threading.Event()

    def __call__(self, queries: list[int]) -> list[int]:
        self.batches.append(list(queries))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("backend down\nsecond line")
        return [q * 10 for q in queries]


def _batcher(run: Any, **kw: Any) -> tuple[MicroBatcher[int, int], list[BatchStats]]:
    stats: list[BatchStats] = []
    pool = ThreadPoolExecutor(max_workers=1)
    b: MicroBatcher[int, int] = MicroBatcher(
        "test", run, executor=pool, on_batch=stats.append, **kw
    )
    return b, stats


async def _many(b: MicroBatcher[int, int], n: int) -> list[Any]:
    return await asyncio.gather(*(b.submit(i) for i in range(n)), return_exceptions=True)


def test_requests_within_the_window_share_one_call() -> None:
    async def main() -> None:
        run = Recorder()
        b, stats = _batcher(run, window_s=0.05, max_batch=8)
        results = await _many(b, 5)
        await b.stop()
        assert [r[0] for r in results] == [0, 10, 20, 30, 40]
        assert run.batches == [[0, 1, 2, 3, 4]]
        assert [s.size for s in stats] == [5]
        assert all(r[1]["queue_ms"] >= 0 for r in results)

    asyncio.run(main())


def test_batches_never_exceed_max_batch() -> None:
    async def main() -> None:
        run = Recorder()
        b, _ = _batcher(run, window_s=0.05, max_batch=3)
        results = await _many(b, 7)
        await b.stop()
        assert [r[0] for r in results] == [i * 10 for i in range(7)]
        assert [len(x) for x in run.batches] == [3, 3, 1]

    asyncio.run(main())


def test_without_a_window_requests_queued_while_busy_form_the_next_batch() -> None:
    async def main() -> None:
        run = Recorder(delay_s=0.1)
        b, _ = _batcher(run, window_s=0.0, max_batch=64)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.02)  # the first call is running now
        rest = await asyncio.gather(*(b.submit(i) for i in range(1, 6)))
        await first
        await b.stop()
        assert run.batches[0] == [0]
        assert run.batches[1] == [1, 2, 3, 4, 5]
        assert [r[0] for r in rest] == [10, 20, 30, 40, 50]

    asyncio.run(main())


def test_a_full_queue_refuses_at_once() -> None:
    async def main() -> None:
        run = Recorder(delay_s=0.2)
        b, _ = _batcher(run, window_s=0.0, max_batch=1, max_queue=2)
        results = await _many(b, 6)
        await b.stop()
        refused = [r for r in results if isinstance(r, Overloaded)]
        answered = [r for r in results if not isinstance(r, BaseException)]
        assert refused and answered
        assert len(answered) + len(refused) == 6
        assert refused[0].retry_after_s >= 1 and "queue is full" in str(refused[0])

    asyncio.run(main())


def test_a_call_over_budget_is_answered_by_the_fallback() -> None:
    async def main() -> None:
        release = threading.Event()

        def stuck(queries: list[int]) -> list[int]:
            release.wait(10)
            return queries

        fallback_calls: list[tuple[list[int], str]] = []

        def fallback(queries: list[int], reason: str) -> list[int]:
            fallback_calls.append((queries, reason))
            return [-q for q in queries]

        b, stats = _batcher(stuck, window_s=0.01, max_batch=4, budget_s=0.05, fallback=fallback)
        results = await _many(b, 3)
        # answered while the model call is still stuck, not after it
        assert not release.is_set()
        release.set()
        await b.stop()
        assert [r[0] for r in results] == [0, -1, -2]
        assert "time budget of 50 ms" in fallback_calls[0][1]
        assert stats[0].fallback_reason and stats[0].size == 3
        assert stats[0].fallback_kind == "timeout"

    asyncio.run(main())


def test_a_failing_call_falls_back_or_reaches_the_caller() -> None:
    async def main() -> None:
        b, stats = _batcher(Recorder(fail=True), fallback=lambda qs, reason: [7 for _ in qs])
        assert (await b.submit(1))[0] == 7
        assert stats[0].fallback_reason == "LM backend failed: RuntimeError: backend down"
        assert stats[0].fallback_kind == "error"
        await b.stop()
        plain, _ = _batcher(Recorder(fail=True))
        with pytest.raises(RuntimeError, match="backend down"):
            await plain.submit(1)
        await plain.stop()

    asyncio.run(main())


def test_a_call_waiting_behind_a_slow_one_is_cancelled_not_run_late() -> None:
    async def main() -> None:
        run = Recorder(delay_s=0.3)
        b, _ = _batcher(
            run, window_s=0.0, max_batch=1, budget_s=0.05, fallback=lambda qs, r: [-1] * len(qs)
        )
        results = await _many(b, 3)
        await asyncio.sleep(0.5)  # let the slow first call finish
        await b.stop()
        assert [r[0] for r in results] == [-1, -1, -1]
        # the second and third never reached the model: cancelled while queued for the thread
        assert run.batches == [[0]]

    asyncio.run(main())


def test_a_batcher_survives_its_event_loop() -> None:
    b, _ = _batcher(Recorder(), window_s=0.0)
    assert asyncio.run(b.submit(1))[0] == 10
    # a second loop (a test client without its lifespan does this per request)
    assert asyncio.run(b.submit(2))[0] == 20


def test_repeated_failures_open_the_breaker_then_it_retries() -> None:
    async def main() -> None:
        run = Recorder(fail=True)
        reasons: list[str] = []

        def fallback(queries: list[int], reason: str) -> list[int]:
            reasons.append(reason)
            return [0] * len(queries)

        b, _ = _batcher(
            run, fallback=fallback, breaker_failures=2, breaker_cooldown_s=0.2, max_batch=1
        )
        for i in range(4):
            await b.submit(i)
        # two calls failed, then the breaker answered without calling the model
        assert len(run.batches) == 2
        assert "skipped after repeated failures" in reasons[2] and "backend down" in reasons[2]
        run.fail = False
        await asyncio.sleep(0.25)  # cool-down over: the model is tried again, and it works
        assert (await b.submit(5))[0] == 50
        assert (await b.submit(6))[0] == 60
        await b.stop()

    asyncio.run(main())
