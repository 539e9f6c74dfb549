"""Progress of long phases (epochs, users, texts, prompts): silent unless asked for.

Library code marks its long loops; that costs nothing while reporting is off, which is the
default (a library stays quiet, as sentence-transformers and transformers do)::

    with progress.phase("evaluate test", total=len(users), unit="user") as bar:
        for chunk in chunks:
            ...
            bar.update(len(chunk), loss=0.31)

    for epoch in progress.track(range(epochs), desc="rq-vae", unit="epoch"):
        ...

Reporting is switched on by the CLI (``--quiet`` keeps it off) or from Python with
:func:`enable` / :func:`disable`, or for a block with :func:`reporting`::

    import llmrec.progress
    with llmrec.progress.reporting():
        model.fit(split.train, split.valid)

Where it goes: to stderr (or the ``stream`` given). On a terminal, live tqdm bars; elsewhere
(CI, a log file, ``nohup``) plain lines at a steady pace — one each tenth of the phase or
each 30 s, whichever comes first, plus the final one — and never a carriage return.

One bar at a time: a phase opened while another is showing in the same thread is silent (an
evaluation inside a training epoch, an LM ranker inside an evaluation). A phase may name the
LM doing its work (:class:`LMWork`); the showing phase then prints, once, how long that work
should take — from the rate measured the last time (kept in a small JSON file, see
:func:`enable`) or else from the rough per-model figures in :data:`ROUGH_SECONDS` — and, when
it ends, stores the rate it measured.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

from llmrec._io import atomic_write_text, dumps_json

__all__ = [
    "ROUGH_SECONDS",
    "LMWork",
    "Phase",
    "batches",
    "disable",
    "enable",
    "is_enabled",
    "phase",
    "reporting",
    "track",
    "write",
]

T = TypeVar("T")

#: plain-line mode: a line each this share of the phase ...
LINE_STEP = 0.1
#: ... or each this many seconds, whichever comes first
LINE_SECONDS = 30.0
#: fewest units a phase must finish for its rate to be stored
MIN_RATE_UNITS = 5

#: rough seconds per unit of LM work, by :attr:`LMWork.key`, for when no rate was measured
#: here yet: per user with 20 candidates, float32, a quiet 2-core CPU (docs/direct.md,
#: "Latency per user", p50).
ROUGH_SECONDS: dict[str, float] = {
    "ranking:verbaliser:smollm2-135m": 1.06,
    "ranking:likelihood:smollm2-135m": 1.29,
    "ranking:generation:smollm2-135m": 10.3,
    "ranking:verbaliser:gemma3-270m": 1.02,
    "ranking:likelihood:gemma3-270m": 1.63,
    "ranking:generation:gemma3-270m": 13.4,
}


@dataclass(frozen=True)
class LMWork:
    """The LM behind a phase, for the estimate printed before it.

    Attributes:
        key: what the rate is stored under, e.g. ``"ranking:verbaliser:smollm2-135m"``.
        verb: what the phase does, e.g. ``"ranking"``.
        lm: how the user knows the model, e.g. ``"smollm2-135m (verbaliser)"``.
        unit: what the work counts (``"user"``); a phase of this work counts it too.
    """

    key: str
    verb: str
    lm: str
    unit: str = "it"

    @classmethod
    def of(cls, verb: str, lm: str, kind: str, *, unit: str = "it") -> LMWork:
        """E.g. ``LMWork.of("ranking", "smollm2-135m", "verbaliser", unit="user")``."""
        return cls(f"{verb}:{kind}:{lm}", verb, f"{lm} ({kind})", unit)


@dataclass
class _Settings:
    stream: TextIO
    live: bool
    rates: Path | None
    prefix: str


_settings: _Settings | None = None
#: the phase showing in this thread (or task), if any
_showing: contextvars.ContextVar[Phase | None] = contextvars.ContextVar(
    "llmrec_progress_showing", default=None
)


def enable(
    stream: TextIO | None = None,
    *,
    live: bool | None = None,
    rates: Path | None = None,
    prefix: str = "",
) -> None:
    """Report progress from now on.

    Args:
        stream: where bars and lines go (default ``sys.stderr``).
        live: live bars (``True``) or plain lines (``False``); default: live on a terminal.
        rates: JSON file of measured LM rates to estimate from and update (e.g.
            :func:`llmrec.paths.progress_rates`); ``None`` estimates from the rough figures only.
        prefix: put before each note (an estimate), e.g. ``"[llmrec] "``.
    """
    global _settings
    out = stream if stream is not None else sys.stderr
    if live is None:
        live = bool(getattr(out, "isatty", lambda: False)())
    _settings = _Settings(out, live, rates, prefix)


def disable() -> None:
    """Stop reporting progress (the default state)."""
    global _settings
    _settings = None


def is_enabled() -> bool:
    return _settings is not None


@contextmanager
def reporting(
    stream: TextIO | None = None,
    *,
    live: bool | None = None,
    rates: Path | None = None,
    prefix: str = "",
) -> Iterator[None]:
    """Report progress inside the block (arguments as :func:`enable`), then restore the state
    before it."""
    global _settings
    saved = _settings
    enable(stream, live=live, rates=rates, prefix=prefix)
    try:
        yield
    finally:
        _settings = saved


def write(message: str) -> None:
    """Print ``message`` (with the prefix) where progress goes, above any live bar; nothing
    while reporting is off."""
    s = _settings
    if s is None:
        return
    if s.live:
        tqdm.write(s.prefix + message, file=s.stream)
    else:
        print(s.prefix + message, file=s.stream, flush=True)


class Phase:
    """A phase in progress: :meth:`update` after each step. Does nothing unless showing."""

    def __init__(self, desc: str, total: int | None, unit: str, settings: _Settings) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.n = 0
        self.work: LMWork | None = None
        self._settings = settings
        self._start = time.perf_counter()
        self._postfix: dict[str, Any] = {}
        self._bar: tqdm[Any] | None = None
        self._next_n = 0.0
        self._printed = -1
        self._next_t = self._start
        if settings.live:
            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=settings.stream,
                dynamic_ncols=True,
                mininterval=0.2,
            )

    def update(self, n: int = 1, **postfix: Any) -> None:
        """``n`` more units done; ``postfix`` (e.g. ``loss=0.3``) shows beside the counts."""
        self.n += n
        if postfix:
            self._postfix.update(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(self._postfix, refresh=False)
            self._bar.update(n)
            return
        now = time.perf_counter()
        if self.n >= self._next_n or now >= self._next_t:
            self._line(now)

    def attribute(self, work: LMWork) -> None:
        """Name the LM doing this phase's work: print the estimate (once); store the rate at
        the end."""
        if self.work is not None:
            return
        self.work = work
        left = None if self.total is None else self.total - self.n
        write(_estimate(work, left, self.unit, self._settings.rates))

    def close(self, completed: bool) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._printed != self.n or not completed or (self.total or 0) > self.n:
            self._line(time.perf_counter(), final=True)  # the last count, or why it ends short
        if completed and self.work is not None and self._settings.rates is not None:
            _store_rate(self._settings.rates, self.work.key, self.unit, self.n, self._elapsed())

    def _elapsed(self) -> float:
        return time.perf_counter() - self._start

    def _line(self, now: float, final: bool = False) -> None:
        text = tqdm.format_meter(
            self.n,
            self.total or 0,  # 0: no total known
            now - self._start,
            prefix=self.desc,
            unit=self.unit,
            postfix=_postfix_text(self._postfix),
            ncols=0,
        )
        if final and self.total is not None and self.n < self.total:
            text += " (stopped)"
        print(text, file=self._settings.stream, flush=True)
        self._printed = self.n
        if self.total:
            self._next_n = self.n + max(1.0, LINE_STEP * self.total)
        self._next_t = now + LINE_SECONDS


class _Silent:
    """A phase that shows nothing: reporting is off, or another phase is showing."""

    def __init__(self, outer: Phase | None = None) -> None:
        self._outer = outer

    def update(self, n: int = 1, **postfix: Any) -> None:
        pass

    def attribute(self, work: LMWork) -> None:
        if self._outer is not None:
            self._outer.attribute(work)


@contextmanager
def phase(
    desc: str,
    total: int | None = None,
    *,
    unit: str | None = None,
    work: LMWork | None = None,
) -> Iterator[Phase | _Silent]:
    """A phase of ``total`` ``unit``\\ s; yields an object with ``update(n, **postfix)``.

    Shows only while reporting is on and no other phase shows in this thread. ``work`` names
    the LM behind it: the estimate is printed by whichever phase shows (this one or the outer
    one, when their units agree). An exception (Ctrl-C included) closes the bar and passes on.
    """
    unit = unit or (work.unit if work is not None else "it")
    s = _settings
    outer = _showing.get()
    if s is None or outer is not None:
        silent = _Silent(outer if outer is not None and outer.unit == unit else None)
        if work is not None:
            silent.attribute(work)
        yield silent
        return
    shown = Phase(desc, total, unit, s)
    token = _showing.set(shown)
    completed = False
    try:
        if work is not None:
            shown.attribute(work)
        yield shown
        completed = True
    finally:
        _showing.reset(token)
        shown.close(completed)


def track(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str | None = None,
    work: LMWork | None = None,
) -> Iterator[T]:
    """``iterable``'s items, one :meth:`Phase.update` after each (see :func:`phase`)."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    with phase(desc, total, unit=unit, work=work) as bar:
        for item in iterable:
            yield item
            bar.update(1)


def batches(
    n: int,
    size: int,
    *,
    desc: str,
    unit: str | None = None,
    work: LMWork | None = None,
) -> Iterator[slice]:
    """Slices ``[0:size]``, ``[size:2*size]``, … covering ``n`` units; progress is updated
    by each slice's length once the loop body is done with it (see :func:`phase`)."""
    with phase(desc, n, unit=unit, work=work) as bar:
        for start in range(0, n, size):
            yield slice(start, start + size)
            bar.update(min(size, n - start))


# --- estimates -----------------------------------------------------------------------------------
def _estimate(work: LMWork, left: int | None, unit: str, rates: Path | None) -> str:
    what = f"{work.verb} {left:,} {unit}s" if left is not None else work.verb
    what += f" with {work.lm}"
    measured = _read_rates(rates).get(work.key, {}).get("seconds_per_unit")
    if isinstance(measured, int | float) and left is not None:
        return f"{what}, about {_duration(measured * left)} at the last measured rate"
    if work.key in ROUGH_SECONDS and left is not None:
        seconds = ROUGH_SECONDS[work.key] * left
        return f"{what}, about {_duration(seconds)} from the rough figure for this model"
    return f"{what}; no rate measured here yet, the bar shows the time left once it starts"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _read_rates(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no file yet, or a damaged one: estimates fall back to the rough figures
    return data if isinstance(data, dict) else {}


def _store_rate(path: Path, key: str, unit: str, n: int, seconds: float) -> None:
    if n < MIN_RATE_UNITS or seconds <= 0:
        return
    rates = _read_rates(path)
    rates[key] = {
        "seconds_per_unit": seconds / n,
        "unit": unit,
        "n": n,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    # an estimate for next time is not worth failing a finished phase over
    with contextlib.suppress(OSError):
        atomic_write_text(path, dumps_json(rates, sort_keys=True))


def _postfix_text(postfix: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in postfix.items())


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
