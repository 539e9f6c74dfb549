"""The report in a real headless browser (Debian's chromium): no console errors, every plot
drawn with a non-zero size.

The browser is driven over the DevTools protocol through ``--remote-debugging-pipe`` (JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no websocket client is needed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from llmrec.report import render_report

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-pipe",
]
SVG_PROBE = """JSON.stringify(Array.from(document.querySelectorAll('svg')).map(s => {
  const r = s.getBoundingClientRect();
  return {w: r.width, h: r.height, marks: s.querySelectorAll(
    'circle,polyline,rect,line,text').length,
    nodata: s.querySelectorAll('.no-data').length};
}))"""
#: error bars drawn with a visible height (the 95% intervals of the accuracy plots)
ERRBAR_PROBE = """JSON.stringify(Array.from(document.querySelectorAll('svg g.errbar')).map(g => {
  const r = g.getBoundingClientRect();
  return {h: r.height, lines: g.querySelectorAll('line').length};
}))"""

#: the LM probes' tables: rows drawn with a visible height after each heading
TABLE_PROBE = """JSON.stringify(['prompt-sensitivity', 'candidate-count'].map(id => {
  const t = document.getElementById(id).nextElementSibling;
  return {tag: t.tagName, rows: Array.from(t.querySelectorAll('tr')).filter(
    r => r.getBoundingClientRect().height > 5).length};
}))"""


class DevToolsPipe:
    """A minimal DevTools-protocol client over chromium's debugging pipe."""

    def __init__(self, user_data_dir: Path) -> None:
        self._to_chrome_r, self._to_chrome_w = os.pipe()
        self._from_chrome_r, self._from_chrome_w = os.pipe()
        cmd = " ".join(
            [f"exec {CHROMIUM}", *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"]
        )
        cmd += f" 3<&{self._to_chrome_r} 4>&{self._from_chrome_w}"
        self.proc = subprocess.Popen(
            ["bash", "-c", cmd],
            pass_fds=(self._to_chrome_r, self._from_chrome_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(self._to_chrome_r)
        os.close(self._from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(30.0)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            event = self._read(deadline - time.monotonic())
            self.events.append(event)
            if event.get("method") == method:
                return event
        raise TimeoutError(method)

    def _read(self, timeout: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome_r], [], [], max(0.0, timeout))
            if not ready:
                raise TimeoutError("no message from chromium")
            chunk = os.read(self._from_chrome_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        with suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome_w)
        os.close(self._from_chrome_r)


@contextmanager
def open_page(url: str, profile: Path) -> Iterator[tuple[DevToolsPipe, str]]:
    """A fresh browser with ``url`` loaded; yields it and the page's session id."""
    browser = DevToolsPipe(profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        yield browser, session
    finally:
        browser.close()


def evaluate(browser: DevToolsPipe, session: str, expression: str) -> Any:
    reply = browser.send(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
    )
    return reply["result"].get("value")


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Exceptions, console.error/assert calls and error log entries among the events."""
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(str(params.get("args")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append(str(params["entry"].get("text")))
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_loads_without_console_errors_and_draws_every_plot(
    tiny_compare: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "cmp"
    shutil.copytree(tiny_compare, folder)
    html_path, _ = render_report(folder)
    with open_page(html_path.resolve().as_uri(), tmp_path / "profile") as (browser, session):
        svgs = json.loads(evaluate(browser, session, SVG_PROBE))
        errbars = json.loads(evaluate(browser, session, ERRBAR_PROBE))
        tables = json.loads(evaluate(browser, session, TABLE_PROBE))
        title = evaluate(browser, session, "document.title")
    assert "llmrec compare" in title
    assert console_errors(browser.events) == []
    # four trade-off plots, the accuracy bars with intervals, the history-length curve
    assert len(svgs) == 6
    # one error bar per full-ranking entry in the scatter and again in the bar chart; the
    # tiny run's intervals are wide enough to be seen
    assert len(errbars) >= 8, errbars
    assert all(e["lines"] == 3 for e in errbars), errbars
    assert sum(e["h"] > 2 for e in errbars) >= 6, errbars
    for svg in svgs:
        assert svg["w"] > 100 and svg["h"] > 50, svg
        assert svg["marks"] > 10, svg
        assert svg["nodata"] == 0, svg  # the tiny run has data for every plot
    # one LM entry: a header and a row of prompt variants; a header and a row per count
    assert tables == [{"tag": "TABLE", "rows": 2}, {"tag": "TABLE", "rows": 4}], tables


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_probe_sees_a_console_error(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom'); nope();</script></body></html>")
    with open_page(page.as_uri(), tmp_path / "profile") as (browser, session):
        evaluate(browser, session, "1")
    errors = console_errors(browser.events)
    assert len(errors) >= 2, errors
