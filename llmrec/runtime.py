"""Runtime options: where and how a model runs, never what it is.

A model's config is its identity (saved in ``config.json``, hashed into compare's stage keys);
:class:`RuntimeOptions` are the knobs that change how fast a stage runs but not its results —
threads, device, compute dtype, the LM answer cache, progress bars, the execution engine.
They are given to a model when it is built or loaded and are never saved with it::

    from llmrec import RuntimeOptions
    model = SASRec(epochs=5, runtime=RuntimeOptions(threads=4, device="auto"))
    model = load_model("out/sasrec", runtime=RuntimeOptions(device="cpu"))

On the CPU with the defaults (``device="auto"`` on a machine without a GPU, ``dtype="auto"``,
2 threads) every figure is bit-identical to the runs before these options existed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from llmrec.config import StrictConfig, validated
from llmrec.errors import ConfigError

log = logging.getLogger(__name__)

Device = str  # "auto" | "cpu" | "cuda" | "cuda:N"
DType = Literal["auto", "float32", "bfloat16", "float16"]


def _batch_size(value: object) -> object:
    """``value`` when it is ``"auto"`` or a whole number >= 1 (digits in a string too); else
    one error naming both choices (pydantic's union would name each branch's failure)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"must be a whole number >= 1 or 'auto', not {value!r}")


#: a batch size given as a number, or ``"auto"``: sized from the device (:func:`batch_users`)
BatchSize = Annotated[int | Literal["auto"], BeforeValidator(_batch_size)]

#: users per LM call and padded tokens per forward on the CPU: the sizes llmrec has always used
#: there, so ``auto`` on the CPU gives today's outputs exactly
CPU_BATCH_USERS = 8
CPU_BATCH_TOKENS = 4096
#: users per LM call on a GPU: past batch 128, measured throughput grows by < 12% (issue 16)
GPU_BATCH_USERS = 128
#: the ceiling of the GPU token budget (padded tokens in one forward)
GPU_MAX_BATCH_TOKENS = 1 << 20
#: share of the GPU's free memory a forward may use (the rest: allocator slack, other models)
GPU_MEMORY_SHARE = 0.5
#: transient activations per token, in hidden-widths (attention projections, the MLP's
#: intermediate, residuals), beside the KV cache
ACTIVATION_WIDTHS = 16

#: keys older model configs held that are runtime options now (moved, with a warning)
LEGACY_KEYS = ("threads", "cache_dir", "progress", "lm_options")


class RuntimeOptions(StrictConfig):
    """How a model runs (not part of its identity).

    Attributes:
        threads: torch intra-op threads while fitting and scoring.
        device: ``auto`` (a GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or
            ``cuda:N``.
        dtype: compute dtype of LM backends; ``auto`` is bfloat16 on a GPU, float32 on the CPU.
            Torch recommenders always train in float32.
        cache_dir: the LM answer cache folder; ``None`` is ``llmrec.paths.lm_cache_dir()``.
        progress: show encoding progress bars.
        lm_options: extra keyword options for LM backends (e.g. ``{"n_gpu_layers": -1}`` for
            llama.cpp's GPU offload).
        engine: where the LM work of encoding and ranking runs: ``local`` (this process, the
            reference) or ``ray`` (a pool of Ray actors per LM; :mod:`llmrec.engine`). Results
            are the same; only the time differs.
        ray_address: the Ray cluster: ``local`` (start a private instance in this process),
            ``auto`` (the cluster this machine belongs to) or ``host:port`` (its GCS address).
        ray_actors: actors per LM, each holding its own copy of the model.
        ray_actor_cpus: CPUs each actor reserves (logical, as Ray counts them).
        ray_actor_gpus: GPUs each actor reserves; a fraction shares one GPU between actors.
            ``None`` (the default) follows ``device``: none on the CPU; on ``cuda``, or ``auto``
            on a cluster with GPUs, the cluster's GPUs shared evenly between the actors
            (:func:`llmrec.engine._placement.actor_gpus`).
    """

    model_config = ConfigDict(frozen=True)

    threads: int = Field(default=2, ge=1, le=1024)
    device: Device = "auto"
    dtype: DType = "auto"
    cache_dir: str | None = None
    progress: bool = False
    lm_options: dict[str, Any] = Field(default_factory=dict)
    engine: Literal["local", "ray"] = "local"
    ray_address: str = "local"
    ray_actors: int = Field(default=2, ge=1, le=1024)
    ray_actor_cpus: float = Field(default=1.0, gt=0, le=1024)
    ray_actor_gpus: float | None = Field(default=None, ge=0, le=64)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda|cuda:\d+", value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, not {value!r}")
        return value

    @field_validator("ray_address")
    @classmethod
    def _known_address(cls, value: str) -> str:
        if not re.fullmatch(r"local|auto|[\w.-]+:\d{1,5}", value):
            raise ValueError(f"must be local, auto or host:port, not {value!r}")
        return value

    def check(self) -> None:
        """Fail early (a one-line :class:`ConfigError`) when a GPU is asked for and there is
        none; ``auto`` and ``cpu`` always run."""
        if self.device.startswith("cuda"):
            resolve_device(self.device)

    def torch_device(self) -> str:
        """The resolved device (see :func:`resolve_device`)."""
        return resolve_device(self.device)

    def torch_dtype_name(self) -> str:
        """The resolved compute dtype of LM backends (see :func:`resolve_dtype`)."""
        return resolve_dtype(self.dtype, self.torch_device())

    def batch_users(self, value: int | str = "auto") -> int:
        """Users per LM call for a batch size ``value`` (see :func:`batch_users`)."""
        return batch_users(value, self.torch_device())

    def replace(self, **changes: Any) -> RuntimeOptions:
        """A copy with ``changes`` (validated)."""
        return runtime_options({**self.model_dump(), **changes})


def runtime_options(data: RuntimeOptions | Mapping[str, Any] | None) -> RuntimeOptions:
    """``data`` as :class:`RuntimeOptions`; a bad value is a one-line :class:`ConfigError`."""
    if isinstance(data, RuntimeOptions):
        return data
    return validated(RuntimeOptions, dict(data or {}), "runtime")


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda[:N]`` for a requested device; ``auto`` takes a GPU when torch sees
    one (and logs the choice once). ``cuda`` without a usable GPU is a :class:`ConfigError`.
    ``cpu`` needs no torch."""
    if device == "cpu":
        return "cpu"
    available, count = _cuda()
    if device == "auto":
        chosen = "cuda" if available else "cpu"
        _log_choice(chosen)
        return chosen
    if not available:
        raise ConfigError(
            f"device {device!r} asked for, but torch sees no CUDA GPU; use cpu or auto"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise ConfigError(f"device {device!r} asked for, but torch sees {count} GPU(s)")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """The compute dtype: ``auto`` is bfloat16 on a GPU and float32 on the CPU."""
    if dtype != "auto":
        return dtype
    return "float32" if device == "cpu" else "bfloat16"


def batch_users(value: int | str, device: str) -> int:
    """``value``, or for ``"auto"`` :data:`CPU_BATCH_USERS` (8) on the CPU and
    :data:`GPU_BATCH_USERS` (128) on a GPU."""
    if value != "auto":
        return int(value)
    return CPU_BATCH_USERS if device == "cpu" else GPU_BATCH_USERS


def batch_tokens(
    value: int | str,
    device: str,
    *,
    hidden: int,
    layers: int,
    dtype_bytes: int,
    free_bytes: int | None = None,
) -> int:
    """Padded tokens (batch x length) one forward may hold, for a budget ``value``.

    ``"auto"`` is :data:`CPU_BATCH_TOKENS` (4,096) on the CPU. On a GPU it is the tokens that
    fit in :data:`GPU_MEMORY_SHARE` of the free memory (``free_bytes``, else asked of torch)
    at ``dtype_bytes x hidden x (2 x layers + ACTIVATION_WIDTHS)`` bytes a token — the KV cache
    of every layer (kept for prefix reuse; ``hidden`` wide, an upper bound under grouped-query
    attention) plus transient activations — between 4,096 and :data:`GPU_MAX_BATCH_TOKENS`.
    Example: SmolLM2-135M (576 wide, 30 layers) in bf16 with 130 GB free: ~740,000 tokens.
    """
    if value != "auto":
        return int(value)
    if device == "cpu":
        return CPU_BATCH_TOKENS
    free = _free_memory(device) if free_bytes is None else free_bytes
    per_token = dtype_bytes * hidden * (2 * layers + ACTIVATION_WIDTHS)
    fit = int(GPU_MEMORY_SHARE * free) // max(1, per_token)
    return max(CPU_BATCH_TOKENS, min(GPU_MAX_BATCH_TOKENS, fit))


def _free_memory(device: str) -> int:
    """Free bytes on a CUDA ``device`` (as the driver reports them)."""
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


@cache
def _log_choice(chosen: str) -> None:
    """Say once per process which device ``auto`` took: to the log, and to the CLI's status
    lines (``[llmrec] device auto: using cpu``)."""
    from llmrec import progress

    log.info("device auto: using %s", chosen)
    progress.write(f"device auto: using {chosen}")


def _cuda() -> tuple[bool, int]:
    """(whether torch sees a CUDA GPU, how many); no torch installed means none."""
    try:
        import torch
    except ImportError:
        return False, 0
    if not torch.cuda.is_available():
        return False, 0
    return True, int(torch.cuda.device_count())


def split_legacy(data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data`` without the runtime keys older model configs held, and those keys.

    They are runtime options now (:data:`LEGACY_KEYS`); a config that still sets one gets a
    :class:`DeprecationWarning` and the value moves to the model's runtime options.
    """
    if data.get("lm_cache_dir") is not None:  # the older name of cache_dir
        data = {**data, "cache_dir": data["lm_cache_dir"], "cache": True}
    moved = {k: data[k] for k in LEGACY_KEYS if k in data}
    if not moved:
        return data, {}
    import warnings

    warnings.warn(
        f"{where}: {', '.join(sorted(moved))} in a model config is deprecated; "
        "pass them as runtime options (runtime: in a config, --threads on the command line)",
        DeprecationWarning,
        stacklevel=3,
    )
    return {k: v for k, v in data.items() if k not in moved}, moved


def lm_backend_options(runtime: RuntimeOptions, backend: str) -> dict[str, Any]:
    """Keyword options a backend gets from ``runtime``: device and dtype for the torch
    backends (``hf``, ``st``) when they differ from the CPU default, none for the others
    (so CPU runs build exactly the backends they built before). Under the Ray engine the
    device is the actors' (``cuda`` when they reserve GPUs, else ``cpu``); with ``device="auto"``
    and ``ray_actor_gpus`` unset, that depends on the cluster, so none is given here and the
    engine adds it (:meth:`llmrec.engine._ray.RayEngine.language_model`)."""
    if backend not in ("hf", "gguf", "st"):
        return {}
    # Ray actors resolve no device of the driver's: a GPU is theirs when they reserve one
    # (Ray shows each actor its own as cuda:0)
    if runtime.engine == "ray":
        gpus = runtime.ray_actor_gpus
        if gpus is None and runtime.device == "auto":
            return {}
        uses_gpu = runtime.device != "cpu" if gpus is None else gpus > 0
        device = "cuda" if uses_gpu else "cpu"
    else:
        device = runtime.torch_device()
    if device == "cpu" and runtime.dtype == "auto":
        return {}
    out: dict[str, Any] = {"device": device}
    if backend != "st":
        out["dtype"] = resolve_dtype(runtime.dtype, device)
    return out
