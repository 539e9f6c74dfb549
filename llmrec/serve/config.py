"""What ``llmrec serve`` serves and how: plain, validated data (no I/O here but reading YAML).

A :class:`ServeConfig` names the dataset (for ids, titles, histories and profiles) and one or
more *entries*, each a saved model folder with the paradigm it stands for. It is built from a
run folder (``llmrec run``), a compare folder (``llmrec compare``) or a YAML file::

    dataset: ml-100k
    entries:
      - {name: sasrec, path: runs/compare-quick/stages/sasrec/model}  # paradigm from the catalogue
      - {name: llm-rerank, paradigm: direct, path: runs/compare-quick/stages/llm-rerank/model}
    batching: {window_ms: 20, max_batch: auto, max_queue: 64}
    lm_budget_ms: 5000
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llmrec._io import check_unique_names, read_yaml_mapping
from llmrec.config import StrictConfig, validated
from llmrec.models.catalogue import Paradigm
from llmrec.runtime import BatchSize, RuntimeOptions

__all__ = ["BatchingConfig", "ServeConfig", "ServeEntry", "load_serve_config"]

#: the largest explicit ``batching.max_batch``
MAX_LM_BATCH = 256
#: an entry's name: what requests name, and a compare stage's folder name (no separators)
ENTRY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ServeEntry(StrictConfig):
    """One served model.

    Attributes:
        name: what requests name in ``paradigm`` (letters, digits, ``-``, ``_``, ``.``).
        paradigm: classic / embeddings / tokens / direct; a request may also name the paradigm,
            which picks its first entry. Default: the catalogue's paradigm of the saved model
            (filled in when the service loads it).
        path: a saved model folder (``config.json`` + ``state.safetensors``).
    """

    name: str = Field(pattern=ENTRY_NAME, max_length=64)
    paradigm: Paradigm | None = None
    path: Path


class BatchingConfig(StrictConfig):
    """Micro-batching of each entry's requests.

    Attributes:
        enabled: ``False`` runs every request alone (what the benchmark compares against).
        window_ms: how long the first request of a batch waits for others, for models that call
            an LM at query time (direct; a user tower). Other models take whatever is queued
            when they are free, without waiting.
        max_batch: most requests in one batch (one forward pass) of a model with an LM;
            ``auto`` follows the device as the rankers' own batches do (8 on the CPU, as
            always; 128 on a GPU: :func:`llmrec.runtime.batch_users`). A number wins.
        max_batch_fast: most requests in one batch of a model without one.
        max_queue: most requests waiting per entry; more are refused with 503 + Retry-After.
    """

    enabled: bool = True
    window_ms: float = Field(default=20.0, ge=0.0, le=1000.0, allow_inf_nan=False)
    max_batch: BatchSize = "auto"
    max_batch_fast: int = Field(default=64, ge=1, le=4096)
    max_queue: int = Field(default=64, ge=1, le=100_000)

    @field_validator("max_batch")
    @classmethod
    def _at_most_max(cls, value: int | str) -> int | str:
        if value != "auto" and int(value) > MAX_LM_BATCH:
            raise ValueError(f"must be at most {MAX_LM_BATCH} or 'auto', not {value!r}")
        return value

    def lm_batch(self, runtime: RuntimeOptions) -> int:
        """Most requests in one batch of a model with an LM, on ``runtime``'s device."""
        return runtime.batch_users(self.max_batch)


class ServeConfig(StrictConfig):
    """Everything ``llmrec serve`` needs.

    Attributes:
        dataset: dataset name or path (as ``llmrec run`` takes it): ids, titles and histories.
        entries: the models served, first is the default.
        host, port: where to listen; 127.0.0.1 unless told otherwise.
        api_key: when set, every ``/v1`` route and ``/metrics`` needs
            ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.
        max_k: the largest ``k`` a request may ask for.
        max_history: the most items a request's ``history`` may hold.
        max_body_bytes: larger request bodies are refused with 413.
        lm_budget_ms: a direct (LM-ranked) request whose LM work exceeds this, or whose backend
            fails, is answered with the retriever's ranking and ``"degraded": true``.
        breaker_failures: after this many failed or late LM batches in a row, a direct entry
            answers from its retriever at once for ``breaker_cooldown_ms``, then tries the LM
            again (0: never skip the LM).
        batching: micro-batching settings.
        history_source: which interactions count as a known user's history: ``all`` of the
            dataset's (a deployed service knows everything) or the model's ``train`` split.
        scoring_threads: torch threads of models without an LM (``None``:
            ``runtime.threads``). One is faster for the small batches a service sees (1.2 vs
            2.9 ms for three users with SASRec here) and leaves the other cores to HTTP.
    """

    dataset: str = "ml-100k"
    entries: list[ServeEntry] = Field(min_length=1)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: str | None = None
    max_k: int = Field(default=100, ge=1, le=10_000)
    max_history: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=65_536, ge=1024)
    lm_budget_ms: float = Field(default=10_000.0, gt=0.0, allow_inf_nan=False)
    breaker_failures: int = Field(default=3, ge=0)
    breaker_cooldown_ms: float = Field(default=5_000.0, ge=0.0, allow_inf_nan=False)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    history_source: Literal["all", "train"] = "all"
    scoring_threads: int | None = Field(default=1, ge=1, le=256)
    #: how the served models run (device, dtype, threads of the LM models, ...)
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @model_validator(mode="after")
    def _unique_names(self) -> ServeConfig:
        check_unique_names([e.name for e in self.entries])
        return self


def load_serve_config(source: Path | dict[str, Any], **overrides: Any) -> ServeConfig:
    """A :class:`ServeConfig` from a YAML file or mapping; ``overrides`` (not ``None``) win.

    Relative entry paths in a file are taken relative to the file's folder; a problem in a file
    is a one-line :class:`ConfigError` naming the file and the key.
    """
    what = "serve config"
    if isinstance(source, Path):
        raw = read_yaml_mapping(source, what)
        for entry in raw.get("entries") or []:
            if isinstance(entry, dict) and "path" in entry:
                entry["path"] = str((source.parent / str(entry["path"])).resolve())
        what = f"serve config {source}"
    else:
        raw = dict(source)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return validated(ServeConfig, raw, f"invalid {what}")


def validate_serve_config(raw: dict[str, Any]) -> ServeConfig:
    """``raw`` validated, with its problems as a one-line :class:`ConfigError`."""
    return validated(ServeConfig, raw, "invalid serve config")
