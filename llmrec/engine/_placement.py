"""What each Ray actor reserves, decided from the runtime options and the cluster's GPUs.

Pure functions (no Ray here), so they are tested without a cluster and without a GPU;
:mod:`llmrec.engine._ray` asks Ray for the GPUs of each live node and calls them before it
places a pool.

``ray_actor_gpus`` given is what each actor reserves. Left unset (``None``), it follows
``device``: ``cpu`` reserves none; ``cuda`` shares the cluster's GPUs evenly between the
actors of up to :data:`POOLS` pools (a compare run holds one pool per LM, e.g. the encoder's
and the ranker's), ``1 / ceil(POOLS x actors / gpus)`` each; ``auto`` does the same when the
cluster has GPUs and reserves none when it has none. A fraction is Ray's bookkeeping of who
may be placed where, not a partition of the GPU: every actor holds a whole copy of its model
in GPU memory (``docs/distributed.md``). Ray would wait forever for GPUs the cluster does not
have or has given away, so a pool that cannot be placed now is a one-line
:class:`~llmrec.errors.ConfigError` instead.

Example::

    >>> cuda = RuntimeOptions(engine="ray", device="cuda", ray_actors=2)
    >>> actor_gpus(cuda, [1.0])  # 4 pools x 2 actors on one GPU
    0.125
    >>> actor_gpus(cuda.replace(ray_actors=8), [8.0, 8.0, 8.0, 8.0])  # 32 GPUs: 1 each
    1.0
    >>> actor_gpus(cuda.replace(device="auto"), [0.0, 0.0])  # no GPUs: CPU actors
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from llmrec.errors import ConfigError
from llmrec.runtime import RuntimeOptions

__all__ = ["POOLS", "actor_gpus", "check_gpus"]

#: pools of actors a run makes room for, on a private instance's CPUs and on the GPUs
POOLS = 4

#: slack when counting fractional GPU slots (0.1 x 10 must count as 1 GPU's worth)
_EPS = 1e-9


def actor_gpus(runtime: RuntimeOptions, node_gpus: Sequence[float]) -> float:
    """GPUs each actor of a pool reserves, for a cluster whose live nodes have ``node_gpus``
    GPUs (Ray's ``GPU`` resource of each). ``device="cuda"`` on a cluster without GPUs is a
    :class:`ConfigError`; check the share with :func:`check_gpus` before placing actors."""
    gpus = runtime.ray_actor_gpus
    if gpus is None:
        total = math.floor(sum(node_gpus) + _EPS)
        if runtime.device == "cpu" or (runtime.device == "auto" and total == 0):
            gpus = 0.0
        elif total == 0:
            raise ConfigError(
                f"device {runtime.device!r} asked for the Ray actors, but the cluster has no "
                "GPUs; use --device cpu, or join a cluster with GPU nodes"
            )
        else:
            gpus = 1.0 / math.ceil(POOLS * runtime.ray_actors / total)
    return gpus


def check_gpus(
    runtime: RuntimeOptions, gpus: float, node_gpus: Sequence[float], free_gpus: float
) -> None:
    """A :class:`ConfigError` unless ``runtime.ray_actors`` actors reserving ``gpus`` GPUs
    each can be placed now: on live nodes with ``node_gpus`` GPUs (Ray takes a fraction below
    1 from one GPU, and whole GPUs otherwise) and within the ``free_gpus`` that other pools
    and jobs left. Ray itself would wait forever."""
    if gpus == 0:
        return
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError(
            f"--ray-actor-gpus {gpus:g}: Ray gives an actor a fraction of one GPU or whole "
            "GPUs (0.25, 0.5, 1, 2), not a fraction of several"
        )
    needed = runtime.ray_actors * gpus
    fits = sum(math.floor(g / gpus + _EPS) for g in node_gpus)
    if fits < runtime.ray_actors or needed > free_gpus + _EPS:
        have = ", ".join(f"{g:g}" for g in node_gpus) or "no live node"
        raise ConfigError(
            f"ray: {runtime.ray_actors} actor(s) x {gpus:g} GPU cannot be placed (GPUs per "
            f"live node: {have}; {free_gpus:g} free); lower --ray-actors or --ray-actor-gpus, "
            "or use --device cpu"
        )
