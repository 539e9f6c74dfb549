"""Tune a sentence encoder on the training split with sentence-transformers' own trainer.

:func:`tune_encoder` draws the pairs (:func:`~llmrec.paradigms.embeddings.tune.training_pairs`),
trains with ``SentenceTransformerTrainer`` and ``MultipleNegativesRankingLoss`` (in-batch
negatives, both ways with ``loss: symmetric``; batches never hold the same text twice), and
writes the tuned folder (safetensors) with its ``tuning.json``. With the cache on, the folder
lives under ``<cache_dir>/tuned-encoders/<key>`` — the key hashes the base encoder, tuning
config, seed and training data — so every model of a run that asks for the same tuning
(text-kNN, LM-SASRec, semantic IDs) trains once; with it off, in a temporary folder that lives
as long as the :class:`~llmrec.paradigms.embeddings.tune.TunedEncoder`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from llmrec._io import staged_dir
from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError, require
from llmrec.lm.registry import backend_of, model_path
from llmrec.paradigms.embeddings.tune import (
    EncoderTuneConfig,
    EncoderTuneReport,
    TrainingPairs,
    TunedEncoder,
    data_digest,
    load_tuned,
    training_pairs,
)
from llmrec.runtime import RuntimeOptions

__all__ = ["base_folder", "tune_encoder"]

log = logging.getLogger(__name__)

#: the folder under the LM cache that holds tuned encoders
TUNED_DIR = "tuned-encoders"


def base_folder(spec: str) -> Path:
    """The sentence-transformers folder an encoder spec names (``minilm-l6``, ``st:PATH``); a
    :class:`ConfigError` for any other backend (only sentence encoders are tuned)."""
    if backend_of(spec) != "st":
        raise ConfigError(
            f"tune needs a sentence-transformers encoder (minilm-l6 or st:PATH), not {spec!r}"
        )
    scheme, sep, target = spec.partition(":")
    folder = Path(target).expanduser() if sep else model_path(scheme)
    if not folder.is_dir():
        raise ConfigError(f"sentence-transformers folder not found: {folder}")
    return folder


def tune_encoder(
    spec: str,
    texts: list[str],
    train: Dataset,
    cfg: EncoderTuneConfig,
    *,
    seed: int,
    runtime: RuntimeOptions,
    cache_dir: Path | None,
) -> TunedEncoder:
    """The encoder ``spec`` names, tuned on ``train``'s pairs of ``texts`` (one per item).

    ``seed`` is used when ``cfg.seed`` is ``None``. With ``cache_dir``, weights an earlier call
    tuned with the same key are read back (``report.cached`` = 1) instead of trained again.
    """
    base = base_folder(spec)
    seed = cfg.seed if cfg.seed is not None else seed
    key = _key(spec, base, cfg, seed, data_digest(train, texts))
    if cache_dir is not None:
        target = cache_dir / TUNED_DIR / key
        if target.is_dir():
            try:
                tuned = load_tuned(target)
                tuned.report.cached = 1
                return tuned
            except ConfigError as exc:  # a damaged entry is tuned again, never trusted
                log.warning("tuned encoder cache entry unusable, tuning again: %s", exc)
    else:
        holder = tempfile.TemporaryDirectory(prefix="llmrec-tuned-")
        target = Path(holder.name) / key
    pairs = training_pairs(train, texts, cfg, seed)
    if len(pairs.anchors) < 2:
        raise ConfigError(
            f"tune: the training split offers {pairs.n_available} pair(s); at least 2 are needed"
        )
    with staged_dir(target) as partial:
        report = _train(base, pairs, cfg, seed, runtime, partial)
        tuned = TunedEncoder(partial, key, report)
        report.weights_bytes = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file())
        tuned.write_meta()
    tuned.folder = target
    if cache_dir is None:
        weakref.finalize(tuned, holder.cleanup)
    return tuned


def _key(spec: str, base: Path, cfg: EncoderTuneConfig, seed: int, data: str) -> str:
    weights = base / "model.safetensors"
    stamp = weights.stat().st_size if weights.is_file() else 0
    raw = json.dumps(
        [spec, str(base.resolve()), stamp, cfg.model_dump(mode="json"), seed, data], sort_keys=True
    )
    return hashlib.sha256(raw.encode()).hexdigest()


def _train(
    base: Path,
    pairs: TrainingPairs,
    cfg: EncoderTuneConfig,
    seed: int,
    runtime: RuntimeOptions,
    out: Path,
) -> EncoderTuneReport:
    """Train a copy of ``base`` on ``pairs``; save it into ``out``; what it cost."""
    st: Any = require("sentence_transformers", "tune")
    datasets: Any = require("datasets", "tune")
    from llmrec.lm.base import quiet_loading
    from llmrec.models._torch import torch_session

    device = runtime.torch_device()
    with torch_session(runtime, seed), tempfile.TemporaryDirectory() as scratch:
        with quiet_loading():
            model = st.SentenceTransformer(str(base), device=device)
        model.max_seq_length = cfg.max_seq_length
        data = datasets.Dataset.from_dict({"anchor": pairs.anchors, "positive": pairs.positives})
        trainer = _trainer_class(st)(
            model=model,
            args=_training_args(st, cfg, seed, device, scratch),
            train_dataset=data,
            loss=_loss(model, cfg.loss),
        )
        _quiet(trainer)
        tic, cpu = time.perf_counter(), time.process_time()
        result = trainer.train()
        seconds, cpu_s = time.perf_counter() - tic, time.process_time() - cpu
        model.save(str(out), create_model_card=False)
    return EncoderTuneReport(
        pairs=len(pairs.anchors),
        pairs_available=pairs.n_available,
        steps=int(result.global_step),
        examples_seen=len(pairs.anchors) * cfg.epochs,
        tokens_seen=_tokens(model, pairs, cfg.max_seq_length) * cfg.epochs,
        seconds=seconds,
        cpu_seconds=cpu_s,
        final_loss=float(result.training_loss),
        device=device,
    )


def _training_args(st: Any, cfg: EncoderTuneConfig, seed: int, device: str, scratch: str) -> Any:
    from sentence_transformers.base.sampler import BatchSamplers

    return st.SentenceTransformerTrainingArguments(
        output_dir=scratch,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup,  # a float below 1 is a fraction of the steps
        seed=seed,
        data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a duplicate would be its own negative
        use_cpu=device == "cpu",
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )


def _trainer_class(st: Any) -> Any:
    class _Trainer(st.SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            """No model card: ``tuning.json`` says what the folder is, and the card's widget
            examples would copy training texts into it."""

    return _Trainer


def _quiet(trainer: Any) -> None:
    """Drop the callback that prints the final metrics to stdout (the CLI's output)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def _loss(model: Any, kind: str) -> Any:
    """In-batch negatives: anchor to positives, and for ``symmetric`` positive to anchors too
    (one softmax per direction, averaged: what replaced the deprecated
    ``MultipleNegativesSymmetricRankingLoss``)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if kind == "symmetric":
        return MultipleNegativesRankingLoss(
            model, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
        )
    return MultipleNegativesRankingLoss(model)


def _tokens(model: Any, pairs: TrainingPairs, limit: int) -> int:
    ids = model.tokenizer(pairs.anchors + pairs.positives)["input_ids"]
    return int(sum(min(len(x), limit) for x in ids))
