"""The web page of ``llmrec serve`` clicked through in a real headless browser (Debian's
chromium) against a real service on 127.0.0.1: pick a user, recommend with every paradigm, type a
history, draw the position-bias grid, and ask for the API key on a 401 — with no console errors.

The browser is driven over the DevTools pipe, as in ``tests/compare/test_browser.py``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.compare.test_browser import CHROMIUM, DevToolsPipe, evaluate, open_page

pytestmark = [
    pytest.mark.slow,
    pytest.mark.server,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)"),
]

K = 5
#: the served entries (tests/serve/conftest.py): BPR scores from user vectors learned at fit
#: time and so cannot serve a typed history; lm-rerank is the direct entry on the fake LM
ENTRIES = ("pop", "knn", "text-knn", "lm-rerank")


@contextmanager
def running(make_service: Callable[..., Any], **overrides: Any) -> Iterator[str]:
    """A fresh service (``overrides`` on the shared config) on 127.0.0.1; yields its URL."""
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    from llmrec.serve.app import create_app
    from tests.serve.live import LiveServer

    with LiveServer(create_app(make_service(**overrides))) as server:
        yield server.url


def compact(value: Any) -> str:
    """``value`` as JavaScript's JSON.stringify writes it."""
    return json.dumps(value, separators=(",", ":"))


def call(base: str, path: str, body: dict | None = None) -> Any:
    """The API's JSON answer, as the test's own reference."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    req = urllib.request.Request(base + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


# --- driving the page --------------------------------------------------------------------------
class Page:
    """The page in one browser tab: queries, real mouse clicks and typing."""

    def __init__(self, browser: DevToolsPipe, session: str) -> None:
        self.browser, self.session = browser, session

    def js(self, expression: str) -> Any:
        return evaluate(self.browser, self.session, expression)

    def wait(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for: {expression}")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (which must be visible)."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            "return r.width > 0 && r.height > 0 ? [r.x + r.width / 2, r.y + r.height / 2]"
            " : null; })()"
        )
        assert box is not None, f"{selector} is not visible"
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
                session=self.session,
            )

    def type(self, selector: str, text: str) -> None:
        """Focus the field, replace its text as typed keys would, then leave it."""
        self.click(selector)
        self.js(f"document.querySelector({json.dumps(selector)}).select()")
        self.browser.send("Input.insertText", {"text": text}, session=self.session)
        self.js(f"document.querySelector({json.dumps(selector)}).blur()")

    def column_states(self) -> dict[str, str]:
        return self.js(
            "Object.fromEntries(Array.from(document.querySelectorAll('#columns .col'))"
            ".map(c => [c.dataset.entry, c.dataset.state]))"
        )

    def column(self, entry: str) -> dict[str, Any]:
        """What the column of ``entry`` shows: item ids, latency line, badge, error."""
        return self.js(
            f"(() => {{ const c = document.querySelector('[data-testid=col-{entry}]');"
            "const t = (s) => { const e = c.querySelector(s); return e ? e.textContent : null; };"
            "return {items: Array.from(c.querySelectorAll('[data-testid=items] li'))"
            ".map(li => li.dataset.id), latency: t('[data-testid=latency]'),"
            "degraded: t('[data-testid=degraded]'), error: t('[data-testid=error]'),"
            "text: c.textContent}; })()"
        )

    def recommend_and_wait(self) -> None:
        before = int(self.js("document.getElementById('columns').dataset.run"))
        self.click("#recommend")
        self.wait(f"Number(document.getElementById('columns').dataset.run) > {before}")


def page_errors(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(script errors, network errors) among the browser's events.

    Script errors are exceptions and console.error calls; network errors are the browser's own
    "failed to load resource" lines, which a 400 or 401 the page expects also produces.
    """
    script, network = [], []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            script.append(str(params.get("exceptionDetails", {})))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            script.append(str(params.get("args")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            (network if entry.get("source") == "network" else script).append(
                f"{entry.get('text')} {entry.get('url', '')}"
            )
    return script, network


# --- the tests ---------------------------------------------------------------------------------
def test_page_recommends_with_every_paradigm_and_draws_the_position_bias_grid(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    with running(make_service) as base, open_page(base + "/", tmp_path / "profile") as (b, s):
        page = Page(b, s)
        served = [p["name"] for p in call(base, "/v1/paradigms")]
        assert set(served) == {*ENTRIES, "bpr"}
        page.wait(f"document.querySelectorAll('#columns .col').length === {len(served)}")
        page.wait("document.querySelectorAll('#user-select option').length > 1")
        assert page_errors(b.events) == ([], [])

        # the random button picks one of the listed users; a typed id is looked up
        users = call(base, "/v1/users?limit=200")
        page.click("#random-user")
        picked = page.wait("document.getElementById('user-id').value")
        assert picked in [str(u) for u in users]
        page.type("#user-id", str(users[5]))
        page.wait(
            f"document.getElementById('user-heading').textContent.startsWith('user {users[5]}:')"
        )

        # a known user: the panel shows their history's titles, every column k items
        user = users[3]
        page.js(
            f"(() => {{ const s = document.getElementById('user-select'); s.value = "
            f"{json.dumps(user)}; s.dispatchEvent(new Event('change')); }})()"
        )
        stored = call(base, f"/v1/users/{user}?last=50")
        titles = [it["title"] for it in stored["history"]]
        page.wait(
            "JSON.stringify(Array.from(document.querySelectorAll('#history-list li'))"
            f".map(li => li.firstChild.textContent)) === {json.dumps(compact(titles))}"
        )
        page.type("#k", str(K))
        page.recommend_and_wait()
        assert page.column_states() == dict.fromkeys(served, "ok")
        for name in served:
            shown = page.column(name)
            want = call(base, "/v1/recommend", {"user_id": user, "k": K, "paradigm": name})
            assert shown["items"] == [it["id"] for it in want["items"]], name
            assert "server" in shown["latency"] and "round trip" in shown["latency"], shown
            assert "batch of" in shown["latency"], shown
            assert (shown["degraded"] is not None) == want["degraded"], shown
            assert shown["error"] is None
            assert "null" not in shown["text"] and "undefined" not in shown["text"], shown

        # a typed history: two ids typed, a third added from the title search
        first, second = stored["history"][0]["id"], stored["history"][1]["id"]
        page.type("#history", f"{first}, {second}")
        page.type("#item-search", "Movie 2")
        page.wait("document.querySelectorAll('[data-testid=search-hit]').length > 0")
        hit = page.js("document.querySelector('[data-testid=search-hit]').dataset.id")
        page.click("[data-testid=search-hit]")
        history = [first, second, hit]
        assert page.js("document.getElementById('history').value").split() == [
            str(i) for i in history
        ]
        assert page.js("document.getElementById('mode-history').checked") is True
        page.recommend_and_wait()
        states = page.column_states()
        assert states == {**dict.fromkeys(ENTRIES, "ok"), "bpr": "error"}
        for name in ENTRIES:
            want = call(base, "/v1/recommend", {"history": history, "k": K, "paradigm": name})
            assert page.column(name)["items"] == [it["id"] for it in want["items"]], name
        # BPR's column shows the service's refusal, status and detail as the API gives them
        with pytest.raises(urllib.error.HTTPError) as api_refusal:
            call(base, "/v1/recommend", {"history": history, "k": K, "paradigm": "bpr"})
        code, detail = api_refusal.value.code, json.loads(api_refusal.value.read())["detail"]
        assert 400 <= code < 500 and "cannot serve" in detail
        refused = page.column("bpr")
        assert refused["items"] == [] and refused["error"] == f"{code}: {detail}"
        page.wait("document.querySelectorAll('#history-list li').length === 3")

        # the position-bias grid of the direct entry: candidates x shifts cells, ranks 0..n-1
        bias = call(base, "/v1/position-bias", {"history": history, "paradigm": "lm-rerank"})
        n, shifts = len(bias["candidates"]), len(bias["shifts"])
        assert n > 1 and shifts > 1
        page.click("[data-testid=bias-lm-rerank] [data-testid=bias-btn]")
        page.wait("document.querySelector('[data-testid=bias-lm-rerank]').dataset.state === 'ok'")
        cells = page.js(
            "Array.from(document.querySelectorAll('[data-testid=bias-grid] tbody tr'))"
            ".map(tr => Array.from(tr.querySelectorAll('[data-testid=bias-cell]'))"
            ".map(td => [Number(td.dataset.rank), Number(td.dataset.slot)]))"
        )
        assert len(cells) == n and all(len(row) == shifts for row in cells)
        for j, shift in enumerate(bias["shifts"]):
            assert [row[j] for row in cells] == [
                [r, sl] for r, sl in zip(shift["rank"], shift["slot"], strict=True)
            ]
        summary = page.js("document.querySelector('[data-testid=bias-summary]').textContent")
        top_slots = [sh["slot"][sh["rank"].index(0)] + 1 for sh in bias["shifts"]]
        assert f"slot {', '.join(map(str, top_slots))} (of {n})" in summary, summary

        script, network = page_errors(b.events)
    assert script == []
    # the browser logs BPR's expected refusal (and nothing else) as a failed resource
    assert network and all(f"status of {code}" in line for line in network), network


def test_a_service_with_an_api_key_asks_for_it(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    key = "s3cret-key"
    with (
        running(make_service, api_key=key) as base,
        open_page(base + "/", tmp_path / "profile") as (b, s),
    ):
        page = Page(b, s)
        page.wait("!document.getElementById('key-form').hidden")
        assert page.js("document.querySelectorAll('#columns .col').length") == 0
        page.type("#api-key", "wrong")
        page.click("#key-submit")
        page.wait("document.getElementById('key-message').textContent.includes('refused')")
        assert page.js("document.querySelectorAll('#columns .col').length") == 0
        page.type("#api-key", key)
        page.click("#key-submit")
        page.wait(f"document.querySelectorAll('#columns .col').length === {len(ENTRIES) + 1}")
        assert page.js("document.getElementById('key-form').hidden") is True
        page.wait("document.querySelectorAll('#history-list li').length > 0")
        page.recommend_and_wait()
        assert set(page.column_states().values()) == {"ok"}
        script, network = page_errors(b.events)
    assert script == []
    assert network and all("status of 401" in line for line in network), network


def test_a_degraded_answer_carries_the_badge(
    make_service: Callable[..., Any], tmp_path: Path
) -> None:
    # a budget no LM call meets: the direct entry is answered by its retriever
    with (
        running(make_service, lm_budget_ms=0.001) as base,
        open_page(base + "/", tmp_path / "profile") as (b, s),
    ):
        page = Page(b, s)
        page.wait("document.querySelectorAll('#history-list li').length > 0")
        # a result that is already there when the budget's timer is seen is still taken (the
        # first call, which starts the worker thread, can be): ask until the retriever answers
        for _ in range(5):
            page.recommend_and_wait()
            direct = page.column("lm-rerank")
            if direct["degraded"]:
                break
        others = [page.column(name) for name in ENTRIES if name != "lm-rerank"]
        script, network = page_errors(b.events)
    assert direct["degraded"] == "degraded: retriever answered", direct
    assert "budget" in direct["text"], direct  # the reason is shown beside the badge
    assert len(direct["items"]) == 10 and "round trip" in direct["latency"]
    assert all(col["degraded"] is None and len(col["items"]) == 10 for col in others)
    assert (script, network) == ([], [])
