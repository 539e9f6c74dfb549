"""The compare runner: each entry one cached *stage* in ``out_dir/stages/<name>/``.

A finished stage whose config is unchanged is reused on the next call, so an interrupted compare
resumes where it stopped. A model that is not registered or cannot be imported is recorded as
*unavailable*; a stage that fails is recorded as *failed*; neither stops the other stages.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from llmrec._io import atomic_write_text, make_dirs, staged_dir
from llmrec.compare.config import CompareConfig, CompareEntry, pipeline_need
from llmrec.compare.context import StageContext, load_data
from llmrec.compare.evidence import is_seeded, read_seed, seed_dir, write_seed
from llmrec.compare.folder import ERROR_FILE, StageStatus, stage_dir, write_manifest
from llmrec.compare.measure import LEDGER, LMLedger
from llmrec.compare.stage import Unavailable, first_line, measure_seed, measure_stage
from llmrec.config import one_line
from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError, LlmrecError
from llmrec.experiment import split_data
from llmrec.models.catalogue import find_spec
from llmrec.results import RECORD_FILE, ResultsStore, RunRecord, read_record, write_record
from llmrec.runtime import LEGACY_KEYS

__all__ = ["run_compare", "stage_key"]

Log = Callable[[str], None]
Status = Literal["done", "cached", "unavailable", "failed", "disabled"]


def run_compare(
    config: CompareConfig,
    out_dir: Path,
    *,
    data: Dataset | None = None,
    data_dir: Path | None = None,
    store: ResultsStore | None = None,
    log: Log = lambda _msg: None,
    constraints: dict[str, Any] | None = None,
) -> list[StageStatus]:
    """Run (or resume) every entry of ``config`` into ``out_dir`` and write ``compare.json``.

    Args:
        data: the dataset (default: loaded by name from ``config.dataset``).
        store: results store that finished records are added to.
        constraints: the user's constraints, stored in ``compare.json`` for the report.

    Returns one :class:`StageStatus` per entry, in config order.
    """
    config.runtime.check()  # before the folder: a GPU that is not there leaves nothing behind
    make_dirs(out_dir, "compare folder")
    started = time.perf_counter()
    data = data if data is not None else load_data(config.dataset, data_dir, seed=config.seed)
    split = split_data(data, config.split, config.seed)
    ctx = StageContext(config, data, split)
    statuses: list[StageStatus] = []
    enabled = [e for e in config.entries if e.enabled]
    total_est = sum(_estimate(e, out_dir, data) for e in enabled)
    log(
        f"compare {len(enabled)} entries on {data.name} ({data.n_users} users, {data.n_items} "
        f"items, {data.n_interactions} interactions); rough estimate {_dur(total_est)}"
    )
    done_s = 0.0
    for number, entry in enumerate(config.entries, start=1):
        if not entry.enabled:
            statuses.append(_status(entry, "disabled"))
            continue
        est = _estimate(entry, out_dir, data)
        remaining = max(0.0, total_est - done_s)
        log(
            f"[{number}/{len(config.entries)}] {entry.name} ({entry.paradigm}, {entry.model}, "
            f"{entry.protocol}): est. {_dur(est)}, about {_dur(remaining)} left"
        )
        status = _run_stage(entry, ctx, out_dir, store, log, LEDGER)
        if status.status in ("done", "cached"):
            status.seeds = _run_seeds(entry, ctx, out_dir, log)
        statuses.append(status)
        done_s += est
        log(f"    {entry.name}: {status.status} in {_dur(status.seconds)} {status.reason}".rstrip())
        write_manifest(out_dir, config, data, split, statuses, constraints, started)
    write_manifest(out_dir, config, data, split, statuses, constraints, started)
    return statuses


def stage_key(
    entry: CompareEntry, config: CompareConfig, data: Dataset, seed: int | None = None
) -> str:
    """Hash of everything a stage's numbers depend on: when it changes, the stage reruns.
    ``seed``: the key of an extra-seed stage of the entry (accuracy only, that seed)."""
    parts: dict[str, Any] = {
        "entry": _identity(entry),
        "dataset": [data.name, data.n_users, data.n_items, data.n_interactions],
        "split": _split_identity(config),
        "eval": config.eval.model_dump(mode="json"),
        "probes": config.probes.model_dump(mode="json"),
        "seed": config.seed if seed is None else seed,
    }
    # added only when set, so that folders written before the validity probes stay valid
    if config.validity is not None and seed is None:
        parts["validity"] = config.validity.model_dump(mode="json")
    if seed is not None:
        parts["extra_seed"] = True
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: split options added after compare folders were first written, with their defaults: left out
#: of the key while at the default, so that those folders stay valid
_LATER_SPLIT_OPTIONS = {"core": 0, "ties": "input"}


def _split_identity(config: CompareConfig) -> dict[str, Any]:
    split = config.split.model_dump(mode="json")
    return {k: v for k, v in split.items() if _LATER_SPLIT_OPTIONS.get(k, object()) != v}


def _identity(entry: CompareEntry) -> dict[str, Any]:
    """The entry as its numbers depend on it: runtime keys an older config put in ``params``
    (threads, cache_dir, ...) are left out, as the runtime options are, and so is a ranker's
    ``batch_size`` (sized from the device; it changes speed, not scores)."""
    out = entry.model_dump(mode="json", exclude={"enabled", "pipeline"})
    out["params"] = {k: v for k, v in out["params"].items() if k not in LEGACY_KEYS}
    ranker = out["params"].get("ranker")
    if isinstance(ranker, dict) and "batch_size" in ranker:  # how many users a call, not what
        out["params"]["ranker"] = {k: v for k, v in ranker.items() if k != "batch_size"}
    return out


def _status(entry: CompareEntry, status: Status, **kw: Any) -> StageStatus:
    return StageStatus(
        name=entry.name,
        paradigm=entry.paradigm,
        model=entry.model,
        protocol=entry.protocol,
        pipeline=pipeline_need(entry),
        status=status,
        **kw,
    )


def _run_stage(
    entry: CompareEntry,
    ctx: StageContext,
    out_dir: Path,
    store: ResultsStore | None,
    log: Log,
    ledger: LMLedger,
) -> StageStatus:
    folder = stage_dir(out_dir, entry.name)
    key = stage_key(entry, ctx.config, ctx.data)
    rel = f"stages/{entry.name}/{RECORD_FILE}"
    cached = _cached_record(folder, key)
    if cached is not None:
        seconds = float(cached.timings.get("stage_s", 0.0))
        return _status(entry, "cached", run_id=cached.run_id, record=rel, key=key, seconds=seconds)
    tic = time.perf_counter()
    try:
        # the stage (model and record) is written beside its folder and renamed into place
        # whole: an interrupted stage leaves the previous folder, which resume does not reuse
        # unless its record carries this stage's key
        with staged_dir(folder) as partial:
            record = measure_stage(entry, ctx, partial, key, log, ledger)
            write_record(record, partial)
    except Unavailable as exc:
        return _status(entry, "unavailable", reason=str(exc), key=key)
    except Exception as exc:  # one entry's failure must not stop the comparison
        reason = _reason(exc)
        if not isinstance(exc, LlmrecError | ValidationError):
            # an unexpected error is a bug somewhere: keep its traceback for the bug report
            atomic_write_text(folder / ERROR_FILE, traceback.format_exc())
            reason += f" (traceback in stages/{entry.name}/{ERROR_FILE})"
        return _status(entry, "failed", reason=reason, key=key, seconds=time.perf_counter() - tic)
    finally:
        gc.collect()
    if store is not None:
        store.add(record)
    return _status(
        entry, "done", run_id=record.run_id, record=rel, key=key, seconds=record.timings["stage_s"]
    )


def _run_seeds(entry: CompareEntry, ctx: StageContext, out_dir: Path, log: Log) -> list[int]:
    """Run (or reuse) the further seeds of a trainable entry; return the seeds whose arrays
    are stored, the stage's own seed first. A seed that fails is logged and left out."""
    cfg = ctx.config
    done = [cfg.seed]
    if cfg.seeds < 2 or not is_seeded(entry.model, entry.params):
        return done
    for seed in range(cfg.seed + 1, cfg.seed + cfg.seeds):
        folder = seed_dir(out_dir, entry.name, seed)
        key = stage_key(entry, cfg, ctx.data, seed)
        if read_seed(folder, key) is not None:
            done.append(seed)
            continue
        log(f"    {entry.name}: seed {seed}")
        try:
            per_user, fit_s = measure_seed(entry, ctx, seed)
            write_seed(folder, per_user, {"stage_key": key, "seed": seed, "fit_s": fit_s})
        except Exception as exc:  # a further seed's failure leaves the entry's own stage intact
            log(f"    {entry.name}: seed {seed} failed: {_reason(exc)}")
            continue
        finally:
            gc.collect()
        done.append(seed)
    return done


def _cached_record(folder: Path, key: str) -> RunRecord | None:
    if not (folder / RECORD_FILE).is_file():
        return None
    try:
        record = read_record(folder)
    except ConfigError:
        return None  # a torn or foreign file: run the stage again
    return record if record.extra.get("stage_key") == key else None


def _estimate(entry: CompareEntry, out_dir: Path, data: Dataset) -> float:
    """Seconds a stage should take: its last record's time, else the catalogue's rough
    per-model figure scaled to the data."""
    folder = stage_dir(out_dir, entry.name)
    if (folder / RECORD_FILE).is_file():
        try:
            seconds = read_record(folder).timings.get("stage_s", 0.0)
        except ConfigError:
            seconds = math.nan
        if math.isfinite(seconds):
            return float(seconds)
    scale = max(0.01, data.n_interactions / 100_000)
    spec = find_spec(entry.model)
    return (spec.rough_s if spec is not None else 60.0) * scale


def _dur(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _reason(exc: BaseException) -> str:
    """One line saying why a stage failed; a validation error names the offending field."""
    if isinstance(exc, ValidationError):
        return one_line(exc, f"invalid {exc.title}")
    return f"{type(exc).__name__}: {first_line(exc)}"
