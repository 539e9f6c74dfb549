"""``llmrec compare``: the paradigms side by side on one split, one protocol, one record each.

A :class:`CompareConfig` lists *entries* — a name, a registered model with its params (its
paradigm taken from the model catalogue unless given), and a protocol (``full`` ranking,
``candidates`` ranking, or ``two-stage``: full ranking through a retriever and an LM ranker).
:func:`run_compare` carries out each entry as one *stage* in ``out_dir/stages/<name>/``:

* fit, then evaluate on the test split (accuracy, cold-item and cold-user slices);
* efficiency: fit seconds, per-user latency p50/p95 from single-user calls on a seeded sample,
  throughput of the batch evaluation, peak memory, model size on disk, LM calls and tokens of
  the fit and per 1,000 recommendations (from the counters of every LM the model holds);
* bias probes (``llmrec.eval.bias``): NDCG@10 by candidate slot, popularity of the
  recommendations against the catalogue, and — for LM rankers — FaiRLLM fairness by attribute;

and writes its :class:`~llmrec.results.RunRecord` atomically; ``compare.json`` in ``out_dir``
lists every stage and its record.

The package's modules: :mod:`~llmrec.compare.config` (what runs), :mod:`~llmrec.compare.runner`
(stages and their cache), :mod:`~llmrec.compare.stage` (one stage),
:mod:`~llmrec.compare.measure` (latency, memory, size, LM cost), :mod:`~llmrec.compare.probes`
(bias) and :mod:`~llmrec.compare.folder` (the folder format report and serve read).
"""

from llmrec.compare.config import (
    CompareConfig,
    CompareEntry,
    EvalSettings,
    ProbeConfig,
    SplitSettings,
    load_compare_config,
    pipeline_need,
    preset_config,
    quick_config,
)
from llmrec.compare.context import load_data, popularity_deciles
from llmrec.compare.folder import (
    MANIFEST_FILE,
    MODEL_DIR,
    Manifest,
    StageLine,
    StageStatus,
    iter_records,
    read_manifest,
)
from llmrec.compare.runner import run_compare, stage_key

__all__ = [
    "MANIFEST_FILE",
    "MODEL_DIR",
    "CompareConfig",
    "CompareEntry",
    "EvalSettings",
    "Manifest",
    "ProbeConfig",
    "SplitSettings",
    "StageLine",
    "StageStatus",
    "iter_records",
    "load_compare_config",
    "load_data",
    "pipeline_need",
    "popularity_deciles",
    "preset_config",
    "quick_config",
    "read_manifest",
    "run_compare",
    "stage_key",
]
