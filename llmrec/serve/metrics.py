"""Prometheus metrics of one service instance (its own registry, so tests can run several).

Exposed at ``GET /metrics`` in the Prometheus text format:

* ``llmrec_requests_total{entry, paradigm, status}`` — answered requests by HTTP status;
* ``llmrec_request_seconds{entry, paradigm}`` — latency histogram of answered requests;
* ``llmrec_batch_size{entry}`` — queries per model call;
* ``llmrec_lm_calls_total{entry}`` — LM calls made while serving;
* ``llmrec_fallbacks_total{entry, reason}`` — degraded answers (``timeout`` / ``error`` /
  ``breaker``: the LM skipped after repeated failures);
* ``llmrec_rejected_total{entry}`` — requests refused with 503 because the queue was full;
* ``llmrec_queue_depth{entry}`` — queries waiting now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmrec.errors import require

__all__ = ["LATENCY_BUCKETS_S", "ServiceMetrics"]

#: seconds; fine below 50 ms (the embeddings paradigm), coarse up to a minute (LM rankers)
LATENCY_BUCKETS_S = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class ServiceMetrics:
    """The counters and histograms of one service, in a private registry."""

    def __init__(self) -> None:
        prom: Any = require("prometheus_client", "serve")
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "llmrec_requests", "Answered requests.", ["entry", "paradigm", "status"], registry=r
        )
        self.latency = prom.Histogram(
            "llmrec_request_seconds",
            "Request latency, from arrival to answer.",
            ["entry", "paradigm"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = prom.Histogram(
            "llmrec_batch_size",
            "Queries answered per model call.",
            ["entry"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.lm_calls = prom.Counter(
            "llmrec_lm_calls", "LM calls made while serving.", ["entry"], registry=r
        )
        self.fallbacks = prom.Counter(
            "llmrec_fallbacks",
            "Answers degraded to the retriever's ranking.",
            ["entry", "reason"],
            registry=r,
        )
        self.rejected = prom.Counter(
            "llmrec_rejected", "Requests refused because the queue was full.", ["entry"], registry=r
        )
        self.queue_depth = prom.Gauge(
            "llmrec_queue_depth", "Queries waiting.", ["entry"], registry=r
        )

    def watch_queue(self, entry: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the entry's queue depth at every scrape."""
        self.queue_depth.labels(entry).set_function(depth)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the text exposition."""
        prom: Any = require("prometheus_client", "serve")
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
