"""What a comparison runs: :class:`CompareConfig` (data, split, evaluation, probes, entries).

An entry names a model (a catalogue short name or ``module:Class``); its paradigm and pipeline
level default to the catalogue's (:mod:`llmrec.models.catalogue`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from llmrec._io import check_unique_names, read_yaml_mapping
from llmrec.config import StrictConfig, validated
from llmrec.errors import ConfigError
from llmrec.experiment import MAX_SEED, EvalOptions, SplitConfig
from llmrec.models.catalogue import Paradigm, PipelineLevel, find_spec
from llmrec.runtime import RuntimeOptions

#: The presets shipped in ``llmrec/compare/presets/``.
PRESETS = ("quick", "full", "ml-1m")

__all__ = [
    "CompareConfig",
    "CompareEntry",
    "EvalSettings",
    "ProbeConfig",
    "Protocol",
    "SplitSettings",
    "ValidityConfig",
    "load_compare_config",
    "pipeline_need",
    "preset_config",
    "quick_config",
]

Protocol = Literal["full", "candidates", "two-stage"]
#: the split settings are the same as ``llmrec run``'s
SplitSettings = SplitConfig


class CompareEntry(StrictConfig):
    """One model under one protocol.

    Attributes:
        name: unique label, also the stage folder name (letters, digits, ``-``, ``_``).
        paradigm: classic / embeddings / tokens / direct; default: the catalogue's paradigm of
            ``model`` (``classic`` for a model the catalogue does not hold).
        model: registered short name (``llmrec models``) or ``module:Class``.
        params: the model's config (validated by the model).
        protocol: ``full`` ranking, ``candidates`` (1 held-out + negatives) or ``two-stage``
            (full ranking, the model being a retriever + LM ranker).
        sample: evaluate on the compare-wide user sample only (for slow LM rankers).
        probes: bias probes to run; default position + popularity, plus fairness for direct.
        pipeline: override of the pipeline level: ``none``, ``offline``, ``index``,
            ``serving`` (or the report's words for them).
        enabled: ``False`` skips the entry.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    paradigm: Paradigm
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    protocol: Protocol = "full"
    sample: bool = False
    probes: list[Literal["position", "popularity", "fairness"]] | None = None
    pipeline: PipelineLevel | None = None
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _paradigm_from_catalogue(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("paradigm") is None and "model" in raw:
            spec = find_spec(str(raw["model"]))
            return {**raw, "paradigm": spec.paradigm if spec is not None else "classic"}
        return raw

    @field_validator("pipeline", mode="before")
    @classmethod
    def _parse_pipeline(cls, value: Any) -> Any:
        if isinstance(value, str):
            level = PipelineLevel.parse(value)
            if level is None:
                words = ", ".join(f"{lv.short} ({lv.label})" for lv in PipelineLevel)
                raise ValueError(f"unknown pipeline level {value!r}; one of {words}")
            return level
        return value

    @field_serializer("pipeline")
    def _pipeline_label(self, level: PipelineLevel | None) -> str | None:
        return None if level is None else level.label

    def probe_set(self) -> set[str]:
        if self.probes is not None:
            return set(self.probes)
        base = {"position", "popularity"}
        return base | {"fairness"} if self.paradigm == "direct" else base

    def level(self) -> PipelineLevel:
        """The pipeline level: the override, else the paradigm's for classic entries, else the
        catalogue's for the model, else the paradigm's."""
        if self.pipeline is not None:
            return self.pipeline
        spec = find_spec(self.model)
        if self.paradigm == "classic" or spec is None:
            return PipelineLevel.of_paradigm(self.paradigm)
        return spec.level


def pipeline_need(entry: CompareEntry) -> str:
    """The pipeline-compatibility label of an entry (what the report shows)."""
    return entry.level().label


class EvalSettings(EvalOptions):
    """``llmrec run``'s :class:`~llmrec.experiment.EvalOptions` (each entry names its own
    protocol), with 10 among the ``ks``: the report reads NDCG/Recall/MRR@10."""

    @model_validator(mode="after")
    def _has_ten(self) -> EvalSettings:
        if 10 not in self.ks:
            raise ValueError("eval.ks must include 10 (the report reads @10)")
        return self


class ProbeConfig(StrictConfig):
    """Sizes of the measurements beside accuracy.

    Attributes:
        sample_users: size of the seeded test-user sample that ``sample`` entries are evaluated
            on (and that every full-ranking entry is also scored on, for a fair comparison).
        latency_users: users timed one by one for the latency percentiles.
        probe_users: users in the position and fairness probes.
        slots: candidate slots for the position probe (``None``: every slot).
        fairness_attributes: user attributes probed (FaiRLLM), values taken from the data.
        max_fairness_values: most frequent values kept per attribute.
        fairness_k: list length compared in the fairness probe.
    """

    sample_users: int = Field(default=200, ge=1)
    latency_users: int = Field(default=50, ge=1)
    probe_users: int = Field(default=50, ge=1)
    slots: list[int] | None = Field(default_factory=lambda: [0, 4, 9, 14, 19])
    fairness_attributes: list[str] = Field(default_factory=lambda: ["gender"])
    max_fairness_values: int = Field(default=6, ge=1)
    fairness_k: int = Field(default=5, ge=1)


ValidityProbe = Literal["history", "memorisation", "prompt", "candidate_count"]
VALIDITY_PROBES: tuple[ValidityProbe, ...] = (
    "history",
    "memorisation",
    "prompt",
    "candidate_count",
)


class ValidityConfig(StrictConfig):
    """The validity probes beside the bias probes (see :mod:`llmrec.eval.validity`).

    Attributes:
        probes: ``history`` (NDCG@10 with each user's history cut to its last L items, for
            sequential and LM entries), ``memorisation`` (the held-out item's rank among the
            candidates with the history removed or replaced by another user's, LM rankers),
            ``prompt`` (NDCG@10 of each LM ranker under paraphrased prompts) and
            ``candidate_count`` (NDCG@10 of each LM ranker with n candidates, beside a random
            order's). Invalid-output rates are always recorded: they cost nothing.
        users: probe users (the first of the seeded probe sample).
        history_lengths: the L values of the history probe.
        prompt_variants: the prompt probe's paraphrases, by name
            (:data:`~llmrec.paradigms.direct.variants.PROMPT_VARIANTS`; ``default`` is the
            entry's own prompt); two at least.
        candidate_counts: the n values of the candidate-count probe (2 at least: the held-out
            item and one other); counts above what a ranker's prompt can list (26 labels) are
            skipped for that ranker.
    """

    probes: list[ValidityProbe] = Field(default_factory=lambda: list(VALIDITY_PROBES))
    users: int = Field(default=20, ge=1)
    history_lengths: list[int] = Field(default_factory=lambda: [5, 10, 20, 50])
    prompt_variants: list[str] = Field(default_factory=lambda: ["default", "plain", "terse"])
    candidate_counts: list[int] = Field(default_factory=lambda: [10, 20, 50])

    @field_validator("history_lengths")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("history_lengths must be 1 or more")
        return sorted(set(value))

    @field_validator("prompt_variants")
    @classmethod
    def _known_variants(cls, value: list[str]) -> list[str]:
        from llmrec.paradigms.direct.variants import PROMPT_VARIANTS

        unknown = [v for v in value if v not in PROMPT_VARIANTS]
        if unknown:
            raise ValueError(
                f"unknown prompt variant(s) {', '.join(unknown)}; "
                f"variants are {', '.join(PROMPT_VARIANTS)}"
            )
        names = list(dict.fromkeys(value))
        if len(names) < 2:
            raise ValueError("prompt_variants needs two different variants at least")
        return names

    @field_validator("candidate_counts")
    @classmethod
    def _two_or_more(cls, value: list[int]) -> list[int]:
        if not value or any(v < 2 for v in value):
            raise ValueError("candidate_counts must be 2 or more (the held-out item and another)")
        return sorted(set(value))


class CompareConfig(StrictConfig):
    """Everything a comparison runs: the data, split, evaluation, probes and entries.

    ``seeds``: how many seeds each trainable entry (a seed-dependent fit: BPR, the SASRec
    family, TIGER, the user tower) runs on: ``seed``, ``seed + 1``, ...; the first is the
    entry's stage, each further one its own cached stage. ``validity``: the validity probes
    (none when absent)."""

    dataset: str = "ml-100k"
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    seeds: int = Field(default=1, ge=1, le=20)
    split: SplitConfig = Field(default_factory=SplitConfig)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    probes: ProbeConfig = Field(default_factory=ProbeConfig)
    validity: ValidityConfig | None = None
    entries: list[CompareEntry] = Field(default_factory=list)
    #: how stages run (threads, device, ...): not part of any stage key
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @model_validator(mode="after")
    def _unique_names(self) -> CompareConfig:
        check_unique_names([e.name for e in self.entries])
        return self

    @model_validator(mode="after")
    def _fairness_list_shorter_than_candidates(self) -> CompareConfig:
        # a list as long as the candidates holds all of them under every profile: SNSR is 0
        # for any ranker, a measurement that cannot fail
        n_candidates = 1 + self.eval.n_negatives
        probed = [e.name for e in self.entries if "fairness" in e.probe_set()]
        if probed and self.probes.fairness_k >= n_candidates:
            raise ValueError(
                f"probes.fairness_k ({self.probes.fairness_k}) must be below the number of "
                f"candidates (1 + eval.n_negatives = {n_candidates}) for the fairness probe of "
                f"{', '.join(probed)}"
            )
        return self


def load_compare_config(
    source: Path | dict[str, Any], overrides: dict[str, Any] | None = None
) -> CompareConfig:
    """A :class:`CompareConfig` from a YAML/JSON file or a mapping, with top-level overrides."""
    raw = read_yaml_mapping(source, "compare config") if isinstance(source, Path) else dict(source)
    raw.update(overrides or {})
    return validated(CompareConfig, raw, "invalid compare config")


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> CompareConfig:
    """A preset shipped in the package (``llmrec/compare/presets/<name>.yaml``: ``quick``, the
    ``--quick`` preset, ``full``, the default, or ``ml-1m``, every paradigm on MovieLens-1M),
    with top-level overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown compare preset {name!r}; presets are {list(PRESETS)}")
    shipped = resources.files("llmrec.compare") / "presets" / f"{name}.yaml"
    with resources.as_file(shipped) as path:
        return load_compare_config(path, overrides)


def quick_config(dataset: str = "ml-100k") -> CompareConfig:
    """The ``--quick`` preset on ``dataset``."""
    return preset_config("quick", {"dataset": dataset})
