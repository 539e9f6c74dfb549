"""The HTTP face of a :class:`~llmrec.serve.service.Service`: a FastAPI app.

Routes (``/v1`` and ``/metrics`` need the API key when one is configured):

* ``POST /v1/recommend`` — ranked items for a known user or a given history (+ profile);
* ``POST /v1/position-bias`` — the direct ranker's ranks of the same candidates in rotated
  orders (what the web page's position-bias view shows);
* ``GET /v1/paradigms``, ``GET /v1/items/{id}``, ``GET /v1/items?q=``, ``GET /v1/users/{id}``,
  ``GET /v1/users``;
* ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /`` (the web page).

Errors are JSON ``{"detail": "one line"}``: 401 (API key), 404 (unknown id or paradigm), 409
(the chosen model cannot serve this query, e.g. an ID model and a new user), 411/413 (body
length), 422 (a field is invalid: FastAPI's list names the field; a body that is not strict
JSON — NaN, Infinity, 1e999, a repeated key, bytes that are not UTF-8 — is one ``json_invalid``
entry), 503 with ``Retry-After`` (queue full). Every body the service writes is RFC 8259 JSON:
a number that is not finite is written as ``null``.

This module deliberately has no ``from __future__ import annotations``: the request models are
built per app (their limits come from the config) and FastAPI must see them as real classes.
"""

import asyncio
import gc
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from llmrec._io import json_safe
from llmrec.errors import ConfigError, LlmrecError, UnknownIdError, require
from llmrec.serve.batcher import BatchStats, MicroBatcher, Overloaded
from llmrec.serve.metrics import ServiceMetrics
from llmrec.serve.schemas import (
    ErrorOut,
    ItemDetailsOut,
    ItemOut,
    JsonId,
    ParadigmOut,
    PositionOut,
    RecommendOut,
    UserOut,
    parse_body,
    request_models,
)
from llmrec.serve.service import (
    Answer,
    CannotServe,
    Query,
    ServedModel,
    Service,
    position_view,
)

__all__ = ["create_app", "parse_body"]


def _status(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """(HTTP status, one-line detail, headers) for an error raised while answering."""
    if isinstance(exc, Overloaded):
        return 503, str(exc), {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, UnknownIdError):
        return 404, str(exc), {}
    if isinstance(exc, CannotServe):
        return 409, str(exc), {}
    if isinstance(exc, ConfigError):
        return 400, str(exc), {}
    if isinstance(exc, LlmrecError):
        return 502, str(exc), {}
    line = (str(exc).strip().splitlines() or [""])[0]
    return 500, f"internal error: {type(exc).__name__}: {line}", {}


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 409, 411, 413, 500, 502, 503)
}


class _Guard:
    """ASGI middleware: the API key and the body size, checked before any parsing."""

    def __init__(self, app: Any, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        guarded = path.startswith("/v1") or path == "/metrics"
        if self.api_key and guarded and not self._authorised(headers):
            await _send_error(send, 401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
            return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            length = headers.get(b"content-length")
            if length is None:
                await _send_error(send, 411, "a request body needs a Content-Length header")
                return
            if not length.isdigit() or int(length) > self.max_body:
                await _send_error(send, 413, f"request body over {self.max_body} bytes")
                return
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        assert self.api_key is not None
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if auth.lower().startswith(b"bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given, self.api_key.encode())


async def _send_error(send: Any, status: int, detail: str, headers: dict[str, str] | None = None):
    import json

    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _Runtime:
    """Per-app state: one worker thread and one batcher per entry, the metrics."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.metrics = ServiceMetrics()
        self.executors = {
            name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llmrec-{name}")
            for name in service.models
        }
        self.fallback_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llmrec-fb")
        self.batchers: dict[str, MicroBatcher[Query, Answer]] = {}

    def start(self) -> None:
        cfg = self.service.config
        for name, served in self.service.models.items():
            self.batchers[name] = self._batcher(served, cfg)
            self.metrics.watch_queue(name, _depth_of(self.batchers[name]))

    def _batcher(self, served: ServedModel, cfg: Any) -> MicroBatcher[Query, Answer]:
        b = cfg.batching
        lm = served.uses_lm
        history = self.service.history
        metrics, name = self.metrics, served.name

        def run(queries: list[Query]) -> list[Answer]:
            before = served.lm_calls()
            try:
                return served.answer(queries, history)
            finally:
                metrics.lm_calls.labels(name).inc(max(0, served.lm_calls() - before))

        def fallback(queries: list[Query], reason: str) -> list[Answer]:
            return served.fallback(queries, history, reason)

        def on_batch(stats: BatchStats) -> None:
            metrics.batch_size.labels(name).observe(stats.size)
            if stats.fallback_kind:
                metrics.fallbacks.labels(name, stats.fallback_kind).inc(stats.size)

        return MicroBatcher(
            name,
            run,
            executor=self.executors[name],
            window_s=(b.window_ms / 1000.0) if (lm and b.enabled) else 0.0,
            max_batch=(b.lm_batch(cfg.runtime) if lm else b.max_batch_fast) if b.enabled else 1,
            max_queue=b.max_queue,
            budget_s=cfg.lm_budget_ms / 1000.0 if served.can_degrade else None,
            fallback=fallback if served.can_degrade else None,
            fallback_executor=self.fallback_pool,
            on_batch=on_batch,
            breaker_failures=cfg.breaker_failures,
            breaker_cooldown_s=cfg.breaker_cooldown_ms / 1000.0,
        )

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        for pool in (*self.executors.values(), self.fallback_pool):
            pool.shutdown(wait=False, cancel_futures=True)


def _strict_json_route(fastapi: Any) -> Any:
    """An ``APIRoute`` whose requests read their JSON body with :func:`parse_body`: the one
    place where every request body is parsed, so no field ever sees a non-finite number."""

    class StrictJsonRequest(fastapi.Request):
        async def json(self) -> Any:
            if not hasattr(self, "_json"):
                self._json = parse_body(await self.body())
            return self._json

    class StrictJsonRoute(fastapi.routing.APIRoute):
        def get_route_handler(self) -> Callable[[Any], Awaitable[Any]]:
            handler = super().get_route_handler()

            async def strict(request: Any) -> Any:
                return await handler(StrictJsonRequest(request.scope, request.receive))

            return strict

    return StrictJsonRoute


def _strict_json_response(responses: Any) -> Any:
    """A ``JSONResponse`` that writes RFC 8259 JSON: a non-finite number becomes ``null``."""

    class StrictJsonResponse(responses.JSONResponse):
        def render(self, content: Any) -> bytes:
            text = json.dumps(
                json_safe(content), allow_nan=False, ensure_ascii=False, separators=(",", ":")
            )
            return text.encode("utf-8")

    return StrictJsonResponse


def _validation_errors(encoders: Any, exc: Any) -> list[Any]:
    """FastAPI's 422 list, with an echoed input that is not UTF-8 (a body sent as another
    content type) shown with replacement characters instead of failing to encode, and a
    validator's exception as its message."""
    custom = {bytes: lambda raw: raw.decode("utf-8", "replace"), Exception: str}
    return encoders.jsonable_encoder(exc.errors(), custom_encoder=custom)


def create_app(service: Service) -> Any:
    """The FastAPI application serving ``service``."""
    fastapi: Any = require("fastapi", "serve")
    responses: Any = require("fastapi.responses", "serve")
    encoders: Any = require("fastapi.encoders", "serve")
    JsonResponse = _strict_json_response(responses)
    cfg = service.config
    runtime = _Runtime(service)

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        runtime.start()
        # the loaded models, dataset and libraries live as long as the process: moving them out
        # of the collector's generations keeps full collections (latency spikes) short
        gc.collect()
        gc.freeze()
        yield
        await runtime.stop()
        service.close()

    app = fastapi.FastAPI(
        title="llmrec",
        version=_version(),
        description="Recommendations from each paradigm of language models in recommender "
        "systems (classic, embeddings, tokens, direct), with their latency.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.router.route_class = _strict_json_route(fastapi)
    app.state.runtime = runtime

    @app.exception_handler(fastapi.exceptions.RequestValidationError)
    async def invalid(_request: Any, exc: Any) -> Any:
        return JsonResponse({"detail": _validation_errors(encoders, exc)}, status_code=422)

    handlers = _Handlers(service, runtime, JsonResponse)
    _query_routes(app, handlers, *request_models(cfg.max_k, cfg.max_history))
    _browse_routes(app, fastapi, responses, handlers)
    app.add_middleware(_Guard, api_key=cfg.api_key, max_body_bytes=cfg.max_body_bytes)
    return app


class _Handlers:
    """What every route shares: item cards, error bodies, and answering through an entry (with
    its metrics)."""

    def __init__(self, service: Service, runtime: "_Runtime", json_response: Any) -> None:
        self.service = service
        self.runtime = runtime
        self.json_response = json_response

    def card(self, index: int, score: float | None = None) -> dict[str, Any]:
        out = self.service.item_card(index)
        if score is not None:
            out["score"] = float(score)
        return out

    def error(self, exc: BaseException) -> Any:
        status, detail, headers = _status(exc)
        return self.json_response({"detail": detail}, status_code=status, headers=headers)

    async def answer(
        self, name_hint: str | None, work: Callable[[ServedModel], Awaitable[dict[str, Any]]]
    ) -> Any:
        runtime = self.runtime
        tic = time.perf_counter()
        served: ServedModel | None = None
        try:
            served = self.service.entry(name_hint)
            if served.name not in runtime.batchers:  # the app runs without its lifespan
                runtime.start()
            body = await work(served)
            status_code = 200
            result = body
        except Exception as exc:
            status_code = _status(exc)[0]
            if status_code == 503 and served is not None:
                runtime.metrics.rejected.labels(served.name).inc()
            result = self.error(exc)
        seconds = time.perf_counter() - tic
        if served is not None:
            m = runtime.metrics
            m.requests.labels(served.name, served.paradigm, str(status_code)).inc()
            if status_code == 200:
                m.latency.labels(served.name, served.paradigm).observe(seconds)
                result["timings_ms"]["total"] = 1000.0 * seconds
        return result


def _query_routes(app: Any, h: _Handlers, RecommendRequest: Any, PositionRequest: Any) -> None:
    """``POST /v1/recommend`` and ``POST /v1/position-bias``."""
    service, runtime = h.service, h.runtime

    @app.post("/v1/recommend", response_model=RecommendOut, responses=_ERRORS)
    async def recommend(request: RecommendRequest) -> Any:
        """Ranked items for a known user or a given history, from one paradigm."""
        req: Any = request

        async def work(served: ServedModel) -> dict[str, Any]:
            query = service.query(
                user_id=req.user_id,
                history=req.history,
                profile=req.profile,
                k=req.k,
                exclude_seen=req.exclude_seen,
            )
            served.check(query)
            result, timing = await runtime.batchers[served.name].submit(query)
            return {
                "entry": served.name,
                "paradigm": served.paradigm,
                "model": served.model.name,
                "user_id": req.user_id,
                "items": [
                    h.card(int(i), s) for i, s in zip(result.items, result.scores, strict=True)
                ],
                "degraded": result.degraded,
                "degraded_reason": result.reason or None,
                "batch_size": result.batch_size,
                "timings_ms": {"queue": timing["queue_ms"], "model": result.model_ms},
            }

        return await h.answer(req.paradigm, work)

    @app.post("/v1/position-bias", response_model=PositionOut, responses=_ERRORS)
    async def position_bias(request: PositionRequest) -> Any:
        """The direct ranker's ranks of its candidates shown in ``shifts`` rotated orders."""
        req: Any = request

        async def work(served: ServedModel) -> dict[str, Any]:
            query = service.query(
                user_id=req.user_id, history=req.history, profile=req.profile, k=1
            )
            loop = asyncio.get_running_loop()
            view = await loop.run_in_executor(
                runtime.executors[served.name], position_view, served, query, req.shifts
            )
            return {
                "entry": served.name,
                "candidates": [h.card(int(i)) for i in view["candidates"]],
                "shifts": view["shifts"],
                "timings_ms": {},
            }

        return await h.answer(req.paradigm, work)


def _browse_routes(app: Any, fastapi: Any, responses: Any, h: _Handlers) -> None:
    """The read-only routes: paradigms, items, users, health, metrics and the web page."""
    service, runtime = h.service, h.runtime

    @app.get("/v1/paradigms", response_model=list[ParadigmOut])
    async def paradigms() -> Any:
        """The served models, first is the default."""
        return [m.describe() for m in service.models.values()]

    @app.get("/v1/items/{item_id}", response_model=ItemDetailsOut, responses=_ERRORS)
    async def item(item_id: Annotated[str, fastapi.Path(max_length=128)]) -> Any:
        """One item's title, text fields and popularity."""
        try:
            return service.item_details(item_id)
        except Exception as exc:
            return h.error(exc)

    @app.get("/v1/items", response_model=list[ItemOut])
    async def search(
        q: Annotated[str, fastapi.Query(max_length=200)] = "",
        limit: Annotated[int, fastapi.Query(ge=1, le=100)] = 20,
    ) -> Any:
        """Items whose title contains ``q``, most popular first."""
        return service.search_items(q, limit)

    @app.get("/v1/users/{user_id}", response_model=UserOut, responses=_ERRORS)
    async def user(
        user_id: Annotated[str, fastapi.Path(max_length=128)],
        last: Annotated[int, fastapi.Query(ge=0, le=1000)] = 50,
    ) -> Any:
        """A known user's profile and latest history."""
        try:
            return service.user_details(user_id, last)
        except Exception as exc:
            return h.error(exc)

    @app.get("/v1/users", response_model=list[JsonId])
    async def users(limit: Annotated[int, fastapi.Query(ge=1, le=1000)] = 20) -> Any:
        """Ids of some users with a history (for pickers)."""
        return service.sample_users(limit)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the service is up and lists its entries."""
        return {"status": "ok", "entries": list(service.models)}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Any:
        body, content_type = runtime.metrics.render()
        return responses.Response(body, media_type=content_type)

    page = resources.files("llmrec.serve").joinpath("static/index.html").read_text()

    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        return responses.HTMLResponse(page)


def _version() -> str:
    from llmrec import __version__

    return __version__


def _depth_of(batcher: MicroBatcher[Query, Answer]) -> Callable[[], int]:
    return lambda: batcher.depth
