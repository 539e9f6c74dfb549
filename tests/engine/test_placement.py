"""What each Ray actor reserves, without Ray and without a GPU: the GPU share follows the
device option, Ray's rules for fractions hold, and a pool that could never be placed (GPUs
asked of a cluster without them) is a one-line error rather than Ray's endless wait."""

from __future__ import annotations

import pytest

from llmrec.engine._placement import POOLS, actor_gpus, check_gpus
from llmrec.errors import ConfigError
from llmrec.runtime import RuntimeOptions, lm_backend_options

RAY = RuntimeOptions(engine="ray", ray_actors=2)


@pytest.mark.parametrize(
    ("device", "nodes", "share"),
    [
        ("cpu", [8.0], 0.0),  # the CPU asked for: GPUs stay free
        ("auto", [0.0, 0.0], 0.0),  # auto on a cluster without GPUs: CPU actors
        ("auto", [1.0], 1 / (POOLS * 2)),  # 4 pools x 2 actors share one GPU
        ("cuda", [1.0, 1.0], 1 / POOLS),  # 2 GPUs: a quarter each
        ("cuda", [4.0, 4.0], 1.0),  # GPUs enough: a whole one each
        ("cuda:1", [8.0], 1.0),
    ],
)
def test_the_gpu_share_follows_the_device(device: str, nodes: list[float], share: float) -> None:
    runtime = RAY.replace(device=device)
    assert actor_gpus(runtime, nodes) == share
    check_gpus(runtime, share, nodes, free_gpus=sum(nodes))  # the default always fits


def test_a_given_share_wins_over_the_device() -> None:
    assert actor_gpus(RAY.replace(device="cpu", ray_actor_gpus=0.5), [1.0]) == 0.5
    assert actor_gpus(RAY.replace(device="cuda", ray_actor_gpus=0.0), []) == 0.0


def test_cuda_on_a_cluster_without_gpus_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"^device 'cuda' asked for the Ray actors, but the "):
        actor_gpus(RAY.replace(device="cuda"), [0.0, 0.0])


@pytest.mark.parametrize(
    ("actors", "gpus", "nodes", "free", "why"),
    [
        (2, 0.5, [0.0, 0.0], 0.0, "node: 0, 0;"),  # no GPU anywhere
        (2, 0.5, [], 0.0, "no live node"),  # no live node reported
        (3, 0.5, [1.0], 1.0, "node: 1;"),  # 1.5 GPUs asked of one
        (2, 2.0, [1.0, 1.0, 1.0, 1.0], 4.0, "node: 1, 1, 1, 1;"),  # no node holds 2
        (2, 0.5, [1.0], 0.25, "; 0.25 free)"),  # other pools hold the rest
    ],
)
def test_a_pool_that_cannot_be_placed_is_a_one_line_error(
    actors: int, gpus: float, nodes: list[float], free: float, why: str
) -> None:
    runtime = RAY.replace(ray_actors=actors)
    with pytest.raises(
        ConfigError, match=r"^ray: \d+ actor\(s\) x [\d.]+ GPU cannot be placed"
    ) as e:
        check_gpus(runtime, gpus, nodes, free)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_fractions_of_several_gpus_are_refused_and_the_rest_fit() -> None:
    with pytest.raises(ConfigError, match=r"^--ray-actor-gpus 1.5: Ray gives an actor a fraction"):
        check_gpus(RAY, 1.5, [8.0], 8.0)
    check_gpus(RAY.replace(ray_actors=10), 0.1, [1.0], 1.0)  # 10 x 0.1 is one GPU exactly
    check_gpus(RAY, 2.0, [2.0, 2.0], 4.0)
    check_gpus(RAY, 0.0, [], 0.0)  # CPU actors need nothing of the kind


def test_actors_take_their_device_from_the_gpus_they_reserve() -> None:
    """The backend's device is the actors', never the driver's: ``cuda`` when they reserve
    GPUs; with ``auto`` and no share given the engine decides it against the cluster."""
    gpu = RAY.replace(ray_actor_gpus=0.5)
    assert lm_backend_options(gpu, "hf") == {"device": "cuda", "dtype": "bfloat16"}
    assert lm_backend_options(gpu, "st") == {"device": "cuda"}
    assert lm_backend_options(RAY.replace(device="cuda"), "hf")["device"] == "cuda"
    assert lm_backend_options(RAY.replace(device="cuda", ray_actor_gpus=0.0), "hf") == {}
    assert lm_backend_options(RAY.replace(device="cpu"), "hf") == {}
    assert lm_backend_options(RAY.replace(device="auto"), "hf") == {}  # the engine's choice
    assert lm_backend_options(gpu, "fake") == {}
