"""The Ray engine: every Ray call llmrec makes is in this module.

:class:`RayEngine` connects to a cluster (or starts a private one), runs a caller's batches
concurrently (one driver thread per actor) and hands out :class:`RayLM`, a
:class:`~llmrec.lm.base.LanguageModel` whose verbs are answered by a persistent pool of
actors, each holding its own copy of the model: one pool per LM (spec and options), placed on
the first request and shared by every model of the run that uses that LM, until
:func:`llmrec.engine.shutdown`. A verb call goes
to an idle actor with its inputs unchanged, so each actor makes the very call the local engine
would make (same batch boundaries, same padding: bit-identical answers on the CPU).

Choices, each made against a trap met for real (``docs/distributed.md``):

* Ray Core actors, not Ray Data: a fresh Ray Data pipeline costs seconds, and a compare run
  makes many small calls (one per batch of users); Ray Data also hangs when its actor pool
  holds every CPU (ray#44687).
* ``address="local"`` starts a private instance: a bare ``ray.init()`` would join any
  cluster already running on the machine. It declares enough logical CPUs for a few pools of
  actors plus one for Ray's own tasks, and actors that cannot be placed fail within
  :data:`START_TIMEOUT_S` with a one-line error instead of waiting forever; GPUs are counted
  before a pool is placed (:mod:`llmrec.engine._placement`), since no timeout is needed to
  know the cluster has none.
* Actors are restarted and their in-flight call retried when they die (``max_restarts``,
  ``max_task_retries``); they write nothing (no LM cache, no files), so a retried call is
  harmless, and the usage counters the driver adds come only with answers it received.
  Constructor arguments are a spec and a few options, never large objects (ray#53727).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import ray

from llmrec.engine import is_local_only
from llmrec.engine._placement import POOLS, actor_gpus, check_gpus
from llmrec.errors import BackendError, ConfigError
from llmrec.lm.base import LanguageModel, Pooling
from llmrec.runtime import RuntimeOptions, lm_backend_options

__all__ = ["RayEngine", "RayLM"]

T = TypeVar("T")
R = TypeVar("R")

#: seconds to wait for a pool's actors to be placed and load their model
START_TIMEOUT_S = 300.0
#: seconds to wait for a cluster's head to accept a connection
CONNECT_TIMEOUT_S = 10.0
#: seconds one verb call may take on an actor before the run fails
CALL_TIMEOUT_S = 3600.0
#: restarts of a dead actor (its calls are retried until it is back or dead past these)
MAX_RESTARTS = 3


class _LMWorker:
    """One actor: an LM built from its spec, answering protocol verbs. No side effects."""

    def __init__(self, spec: str, options: dict[str, Any]) -> None:
        from llmrec.lm.registry import load_lm

        self.lm = load_lm(spec, **options)  # no disk cache: the driver keeps it

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.lm.model_id,
            "context_length": self.lm.context_length,
            "has_chat_template": self.lm.has_chat_template,
            "node": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
        }

    def call(
        self, verb: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, float]]:
        """``lm.verb(*args, **kwargs)`` and the usage counters it added."""
        before = self.lm.stats.as_dict()
        answer = getattr(self.lm, verb)(*args, **kwargs)
        after = self.lm.stats.as_dict()
        return answer, {k: v - before.get(k, 0.0) for k, v in after.items()}


class _ActorPool:
    """The actors holding one LM (one spec, one set of options), each taken by one call at a
    time. Shared by every :class:`RayLM` of that LM in a run, so a compare run places each
    model's actors once, not once per stage."""

    def __init__(self, spec: str, actors: Sequence[Any]) -> None:
        self.spec = spec
        self.actors = list(actors)
        self._idle: queue.Queue[Any] = queue.Queue()
        try:
            self.workers = ray.get([a.info.remote() for a in self.actors], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise ConfigError(
                f"ray: {len(self.actors)} actor(s) for {spec} were not placed and loaded within "
                f"{START_TIMEOUT_S:.0f} s (the cluster has {ray.available_resources()} free); "
                "lower --ray-actors, --ray-actor-cpus or --ray-actor-gpus"
            ) from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise BackendError(
                f"ray: an actor for {spec} failed to start: {_first_line(exc)}"
            ) from None
        for actor in self.actors:
            self._idle.put(actor)

    def call(
        self, verb: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """An idle actor's answer to ``verb`` and the usage counters it added."""
        actor = self._idle.get()
        try:
            ref = actor.call.remote(verb, args, kwargs)
            answer, used = ray.get(ref, timeout=CALL_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise BackendError(
                f"ray: {self.spec} {verb} took over {CALL_TIMEOUT_S:.0f} s"
            ) from None
        except ray.exceptions.RayTaskError as exc:
            raise _unwrapped(exc) from None
        except ray.exceptions.RayError as exc:  # an actor dead past its restarts
            raise BackendError(f"ray: {self.spec} {verb} failed: {_first_line(exc)}") from None
        finally:
            self._idle.put(actor)
        return answer, used

    def where(self) -> list[tuple[str, int]]:
        infos = ray.get([a.info.remote() for a in self.actors], timeout=START_TIMEOUT_S)
        return [(str(i["node"]), int(i["pid"])) for i in infos]

    def close(self) -> None:
        """End the actors; safe to call twice."""
        if ray.is_initialized():  # after ray.shutdown() the actors are gone already
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
        self.actors = []


class RayLM(LanguageModel):
    """An LM whose verbs run on a pool of Ray actors (see the module docstring).

    Concurrent callers (the engine's threads) each take an idle actor, so a pool of ``n``
    actors answers ``n`` calls at once. ``stats`` sums the counters each call answered for
    this instance added on its actor. Inside :func:`~llmrec.engine.run_locally` a copy loaded
    in this process answers instead.
    """

    counts_calls = False  # the actors' models count; their counts are added here

    def __init__(self, spec: str, options: dict[str, Any], pool: _ActorPool) -> None:
        super().__init__()
        self.spec, self.options = spec, dict(options)
        self._pool = pool
        self._local: LanguageModel | None = None
        self.workers = pool.workers
        self.model_id = str(pool.workers[0]["model_id"])

    def _call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        if is_local_only():
            return getattr(self._local_lm(), verb)(*args, **kwargs)
        answer, used = self._pool.call(verb, args, kwargs)
        self._count(**used)
        return answer

    def _local_lm(self) -> LanguageModel:
        if self._local is None:
            from llmrec.lm.registry import load_lm

            self._local = load_lm(self.spec, **self.options)
        return self._local

    # --- the protocol, answered by the actors ---------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        kwargs: dict[str, Any] = {"batch_size": batch_size}
        if pooling is not None:
            kwargs["pooling"] = pooling
        return np.array(self._call("encode", list(texts), **kwargs))

    def generate(self, prompts: Sequence[str], **kwargs: Any) -> list[str]:
        return list(self._call("generate", list(prompts), **kwargs))

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        return np.array(self._call("score_next", prompt, list(labels)))

    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        return np.array(self._call("score_next_batch", list(prompts), list(labels)))

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        return np.array(self._call("loglikelihood", prompt, list(continuations)))

    def loglikelihood_batch(
        self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        # one actor call for the users' batch, as the local call is one LM call
        conts = [list(c) for c in continuations]
        return [np.array(a) for a in self._call("loglikelihood_batch", list(prompts), conts)]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return list(self._call("count_tokens", list(texts)))

    @property
    def context_length(self) -> int:
        return int(self.workers[0]["context_length"])

    @property
    def has_chat_template(self) -> bool:
        return bool(self.workers[0]["has_chat_template"])

    @property
    def answers_remotely(self) -> bool:
        return True

    def apply_chat_template(self, prompt: str) -> str:
        return str(self._call("apply_chat_template", prompt))

    def where(self) -> list[tuple[str, int]]:
        """(node address, process id) of each actor now: a restarted actor has new ones."""
        return self._pool.where()

    def close(self) -> None:
        """Release the local copy; the actors belong to the engine (:meth:`RayEngine.close`)."""
        if self._local is not None:
            self._local.close()
            self._local = None


class RayEngine:
    """Batches run concurrently, LM verbs on actor pools (see the module docstring)."""

    kind = "ray"

    def __init__(self, runtime: RuntimeOptions) -> None:
        self.runtime = runtime
        self._pools: dict[str, _ActorPool] = {}
        self._lock = threading.Lock()
        self._opened = False
        self._gpus: float | None = None  # per actor, decided on the first pool

    def connect(self) -> None:
        """Join the cluster ``ray_address`` names (once); a Ray connection this process
        already holds (a notebook's) is used as it is."""
        if ray.is_initialized():
            return
        rt = self.runtime
        if rt.ray_address == "local":
            cpus = math.ceil(POOLS * rt.ray_actors * rt.ray_actor_cpus) + 1
            args: dict[str, Any] = {"address": "local", "num_cpus": cpus,
                                    "include_dashboard": False}  # fmt: skip
        else:
            _check_reachable(rt.ray_address)
            args = {"address": rt.ray_address}
        try:
            ray.init(logging_level=logging.WARNING, **args)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"ray: cannot connect to {rt.ray_address!r}: {_first_line(exc)}"
            ) from None
        self._opened = True

    @property
    def width(self) -> int:
        """Batches in flight at once: one per actor."""
        return self.runtime.ray_actors

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn(item)`` on up to :attr:`width` driver threads at once (each blocks on an
        actor), yielded in the order of ``items``; the first failure stops the rest."""
        if is_local_only():
            yield from (fn(item) for item in items)
            return
        pending: list[cf.Future[R]] = []
        with cf.ThreadPoolExecutor(self.width, thread_name_prefix="llmrec-ray") as pool:
            try:
                for item in items:
                    pending.append(pool.submit(fn, item))
                    if len(pending) >= 2 * self.width:
                        yield pending.pop(0).result()
                while pending:
                    yield pending.pop(0).result()
            finally:
                for future in pending:
                    future.cancel()

    def language_model(self, spec: str, options: dict[str, Any]) -> LanguageModel:
        """A :class:`RayLM` of ``spec``: its own counters, on the run's actors of that LM
        (placed on the first request). The backend's device follows the GPUs the actors
        reserve; ``options`` given win."""
        from llmrec.lm.registry import backend_of

        with self._lock:
            gpus = self.actor_gpus()
            placed = self.runtime.replace(ray_actor_gpus=gpus)
            options = {**lm_backend_options(placed, backend_of(spec)), **options}
            key = json.dumps([spec, options], sort_keys=True, default=repr)
            if key not in self._pools:
                self._pools[key] = self._start_pool(spec, options, gpus)
            return RayLM(spec, options, self._pools[key])

    def actor_gpus(self) -> float:
        """GPUs each actor reserves (:func:`~llmrec.engine._placement.actor_gpus`, against the
        cluster's live nodes when first asked)."""
        if self._gpus is None:
            self.connect()
            self._gpus = actor_gpus(self.runtime, _node_gpus())
        return self._gpus

    def _start_pool(self, spec: str, options: dict[str, Any], gpus: float) -> _ActorPool:
        rt = self.runtime
        # Ray waits forever for GPUs it does not have: count them first
        check_gpus(rt, gpus, _node_gpus(), float(ray.available_resources().get("GPU", 0.0)))
        worker = ray.remote(
            num_cpus=rt.ray_actor_cpus,
            num_gpus=gpus,
            max_restarts=MAX_RESTARTS,
            # a lost node fails a call many times over ("actor unavailable") before Ray
            # marks the node dead and restarts its actors: retry until the actor is back,
            # bounded by its restarts, never by a count such blips use up in a second
            max_task_retries=-1,
            scheduling_strategy="SPREAD",  # one model copy per machine before two on one
        )(_LMWorker)
        return _ActorPool(spec, [worker.remote(spec, dict(options)) for _ in range(rt.ray_actors)])

    def describe(self) -> dict[str, Any]:
        rt = self.runtime
        out: dict[str, Any] = {
            "kind": "ray",
            "ray_version": ray.__version__,
            "address": rt.ray_address,
            "actors": rt.ray_actors,
            "actor_cpus": rt.ray_actor_cpus,
            "actor_gpus": self._gpus if self._gpus is not None else rt.ray_actor_gpus,
            "pools": len(self._pools),
        }
        if ray.is_initialized():
            out["nodes"] = sum(1 for n in ray.nodes() if n.get("Alive"))
            nodes = {w["node"] for pool in self._pools.values() for w in pool.workers}
            out["actor_nodes"] = sorted(nodes)
        return out

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools = {}
        if self._opened and ray.is_initialized():
            ray.shutdown()
        self._opened = False
        self._gpus = None


def _node_gpus() -> list[float]:
    """The GPUs (Ray's ``GPU`` resource) of each live node."""
    return [float(n["Resources"].get("GPU", 0.0)) for n in ray.nodes() if n.get("Alive")]


def _check_reachable(address: str) -> None:
    """A one-line error when ``host:port`` does not answer within :data:`CONNECT_TIMEOUT_S`:
    ``ray.init`` itself retries an unreachable address for minutes."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as exc:
        raise ConfigError(
            f"ray: cannot reach the cluster at {address} ({exc}); is its head running "
            "(ray start --head) and the address its GCS port?"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unwrapped(exc: Any) -> BaseException:
    """The exception an actor's LM raised (a BackendError stays one), else a BackendError."""
    cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
    inner = getattr(exc, "cause", None)
    if isinstance(inner, BackendError | ConfigError):
        return inner
    return BackendError(f"ray: an actor failed: {_first_line(cause)}")
