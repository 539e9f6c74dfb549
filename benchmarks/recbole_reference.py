"""Reference figures from RecBole 1.2.1 (SASRec, BPR) on ML-100K, under llmrec's protocol.

Runs in its own virtual environment, never in llmrec's (RecBole pins old packages)::

    python3 -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0 recbole==1.2.1 "numpy<2" "pandas<2.2" \
        "setuptools<70"
    OMP_WAIT_POLICY=PASSIVE /tmp/recbole-venv/bin/python benchmarks/recbole_reference.py \
        --models SASRec BPR --seeds 2020 2021 2022 --threads 2

The protocol matches ``benchmarks/bench_baselines.py``: the ML-100K atomic file shipped inside
the recbole wheel, every rating an interaction (no threshold, no filtering), leave-one-out by time
(last = test, second last = valid), full ranking, NDCG@10 on validation for early stopping,
RecBole's defaults otherwise (stopping_step 10, epochs 300, lr 1e-3, batch 2048; SASRec with its
default CE loss and no negative sampling).

RecBole does not mask a user's known items when ranking for sequential models; general models
(BPR) have train (+ valid at test time) masked. So for each model the test set is scored twice:
``recbole`` is RecBole's own evaluator, ``masked`` ranks the target among all items the user is
not known to have at test time (train + valid), which is llmrec's protocol. ML-100K has no
repeated (user, item) pairs, so masking can only raise the figures.

Timings: wall time from the start of ``trainer.fit`` to the end of the validation of the best
epoch (``time_to_best_s``) and of the whole fit including the patience epochs (``fit_s``).
Results are merged into ``benchmarks/results/recbole_reference.json`` per model.

A run that takes many hours on a small machine can be carried over interruptions: each
validation appends to ``<workdir>/<model>-<seed>-progress.json`` (wall s, CPU s, score);
``--resume CHECKPOINT`` continues from RecBole's best-epoch checkpoint (model, optimiser,
patience counter) and the same curve; ``--evaluate CHECKPOINT`` writes the record of a run that
finished training but not its record; ``--partial-from`` records one that never finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "recbole_reference.json"
KS = (10, 20)


def _config(model: str, threads: int, seed: int, workdir: Path) -> dict:
    import recbole

    cfg: dict = {
        "data_path": str(Path(recbole.__file__).parent / "dataset_example"),
        "checkpoint_dir": str(workdir / "saved"),
        "use_gpu": False,
        "seed": seed,
        "reproducibility": True,
        "show_progress": False,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "threshold": None,
        "val_interval": None,
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "mode": "full",
            "group_by": "user",
        },
        "metrics": ["NDCG", "Recall", "MRR"],
        "topk": list(KS),
        "valid_metric": "NDCG@10",
        "worker": 0,
    }
    if model == "SASRec":
        cfg["train_neg_sample_args"] = None
    return cfg


def _known_items(dataset, n_users: int) -> list[set[int]]:
    """Per internal user id, the items known at test time: all but the user's last by time."""
    import numpy as np

    inter = dataset.inter_feat
    users = inter[dataset.uid_field].numpy()
    items = inter[dataset.iid_field].numpy()
    times = inter[dataset.time_field].numpy()
    # stable sort by (user, time): ties keep file order, as RecBole's own split does
    order = np.lexsort((np.arange(len(users)), times, users))
    known: list[set[int]] = [set() for _ in range(n_users)]
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    for seg_u, seg_i in zip(np.split(users, bounds), np.split(items, bounds), strict=True):
        known[int(seg_u[0])] = {int(x) for x in seg_i[:-1]}
    return known


def _masked_test(trainer, test_data, known: list[set[int]]) -> dict[str, float]:
    """NDCG/Recall/MRR@K of the test item ranked among items the user does not know yet."""
    import numpy as np
    import torch

    model = trainer.model
    model.eval()
    ranks: list[int] = []
    with torch.no_grad():
        for batch in test_data:
            interaction, _hist, _pos_u, pos_i = batch
            scores = model.full_sort_predict(interaction).view(len(interaction), -1)
            scores[:, 0] = -np.inf
            uids = interaction[model.USER_ID].numpy()
            for row, (uid, target) in enumerate(zip(uids, pos_i.numpy(), strict=True)):
                mask = [i for i in known[int(uid)] if i != int(target)]
                scores[row, mask] = -np.inf
                ranks.append(int((scores[row] > scores[row, int(target)]).sum()))
    r = np.asarray(ranks)
    out = {}
    for k in KS:
        hit = r < k
        out[f"ndcg@{k}"] = float(np.where(hit, 1 / np.log2(r + 2), 0).mean())
        out[f"recall@{k}"] = float(hit.mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1 / (r + 1), 0).mean())
    return out


def _allow_own_checkpoints() -> None:
    """RecBole 1.2.1 reloads its best checkpoint with ``torch.load``, whose default became
    ``weights_only=True`` in torch 2.6; the checkpoint holds RecBole's config object. The file is
    the one this run just wrote into its own workdir, so it is loaded as before."""
    import functools

    import torch

    torch.load = functools.partial(torch.load, weights_only=False)


def _best_epoch(curve) -> int:
    """Index of the best validation score in a ``(wall s, CPU s, score)`` curve; the first on a
    tie, as RecBole keeps the first (it saves only on a strict improvement)."""
    return max(range(len(curve)), key=lambda i: (curve[i][2], -i))


def _setup(model_name: str, threads: int, seed: int, workdir: Path):
    """RecBole's dataset, loaders and trainer for one model and seed, as ``run_recbole`` builds
    them."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    torch.set_num_threads(threads)
    _allow_own_checkpoints()
    config = Config(
        model=model_name, dataset="ml-100k", config_dict=_config(model_name, threads, seed, workdir)
    )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return dataset, train_data, valid_data, test_data, trainer


def run_one(
    model_name: str,
    threads: int,
    seed: int,
    workdir: Path,
    progress: Path | None = None,
    resume: Path | None = None,
) -> dict:
    dataset, train_data, valid_data, test_data, trainer = _setup(model_name, threads, seed, workdir)
    # (wall s since fit start, process CPU s since fit start, valid NDCG@10)
    history: list[tuple[float, float, float]] = []
    wall_offset = cpu_offset = 0.0
    if resume is not None:
        history, wall_offset, cpu_offset = _resume(trainer, resume, workdir, progress)
    original_valid = trainer._valid_epoch
    t0 = c0 = 0.0

    def timed_valid(*args, **kwargs):
        score, result = original_valid(*args, **kwargs)
        wall = time.perf_counter() - t0 + wall_offset
        history.append((wall, time.process_time() - c0 + cpu_offset, float(score)))
        if progress is not None:  # an interrupted run still leaves its curve behind
            progress.write_text(json.dumps({"model": model_name, "curve": history}) + "\n")
        return score, result

    trainer._valid_epoch = timed_valid
    trainer_start = trainer.start_epoch
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - t0 + wall_offset
    record = _record(model_name, threads, seed, dataset, valid_data, test_data, trainer, history)
    record["fit_s"] = fit_s  # to the end of fit, past the last validation
    record["resumed_from_epoch"] = None if resume is None else trainer_start
    return record


def _record(
    model_name: str,
    threads: int,
    seed: int,
    dataset,
    valid_data,
    test_data,
    trainer,
    history: list[tuple[float, float, float]],
    model_file: Path | None = None,
) -> dict:
    """Validation and test figures of the best checkpoint (``model_file``, else the one this
    trainer saved), beside the curve's timings.

    The validation result is re-computed from the checkpoint rather than taken from ``fit``:
    a resumed run that never improves returns none (RecBole's checkpoint keeps only the score).
    """
    file = None if model_file is None else str(model_file)
    best_result = trainer.evaluate(valid_data, load_best_model=True, model_file=file)
    test_result = trainer.evaluate(test_data, load_best_model=True, model_file=file)
    best_idx = _best_epoch(history)
    masked = _masked_test(trainer, test_data, _known_items(dataset, dataset.user_num))
    return {
        "model": model_name,
        "seed": seed,
        "threads": threads,
        "n_users": dataset.user_num - 1,
        "n_items": dataset.item_num - 1,
        "n_interactions": len(dataset.inter_feat),
        "best_valid_ndcg@10": float(best_result["ndcg@10"]),
        "best_valid": {k: float(v) for k, v in best_result.items()},
        "test_recbole": {k: float(v) for k, v in test_result.items()},
        "test_masked": masked,
        "best_epoch": best_idx,
        "epochs_run": len(history),
        "time_to_best_s": history[best_idx][0],
        "cpu_to_best_s": history[best_idx][1],
        "valid_curve": [round(s, 4) for _, _, s in history],
    }


def evaluate_finished(
    model_name: str, threads: int, seed: int, workdir: Path, progress: Path, checkpoint: Path
) -> dict:
    """The record of a run whose training finished (RecBole stopped it for patience) but whose
    record was not written: figures from its best checkpoint, timings from its progress file.

    Refuses a curve that shows no patience stop, and a checkpoint that does not reproduce the
    curve's best validation score.
    """
    if not progress.exists():
        raise SystemExit(f"--evaluate needs the run's progress file ({progress})")
    history = [tuple(row) for row in json.loads(progress.read_text())["curve"]]
    best_idx = _best_epoch(history)
    dataset, _train, valid_data, test_data, trainer = _setup(model_name, threads, seed, workdir)
    patience = trainer.config["stopping_step"]
    if len(history) - 1 - best_idx <= patience:
        raise SystemExit(
            f"{progress}: {len(history) - 1 - best_idx} epochs after the best, RecBole stops "
            f"after {patience + 1}; the run has not finished (continue it with --resume)"
        )
    record = _record(
        model_name, threads, seed, dataset, valid_data, test_data, trainer, history, checkpoint
    )
    if abs(record["best_valid_ndcg@10"] - history[best_idx][2]) > 1e-3:
        raise SystemExit(
            f"{checkpoint} gives validation NDCG@10 {record['best_valid_ndcg@10']:.4f}, the "
            f"curve's best is {history[best_idx][2]:.4f}: not this run's best checkpoint"
        )
    record["fit_s"] = history[-1][0]  # the last validation: fit's end was not recorded
    record["evaluated_from_checkpoint"] = str(checkpoint)
    return record


def _resume(
    trainer, checkpoint: Path, workdir: Path, progress: Path | None
) -> tuple[list[tuple[float, float, float]], float, float]:
    """Continue an interrupted run from RecBole's best-epoch checkpoint (model, optimiser,
    epoch, patience counter, best score), keeping the interrupted run's curve up to that epoch.

    Its timings continue from the checkpoint's epoch: the CPU seconds of the epochs replayed
    after it are counted once, not twice. The checkpoint is copied, because RecBole overwrites
    its resume file when the score improves.
    """
    import shutil

    if progress is None or not progress.exists():
        raise SystemExit(f"resume needs the interrupted run's progress file ({progress})")
    own = workdir / "saved" / f"resumed-{checkpoint.name}"
    own.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, own)
    trainer.resume_checkpoint(own)
    curve = [tuple(row) for row in json.loads(progress.read_text())["curve"]]
    kept = curve[: trainer.start_epoch]
    if len(kept) < trainer.start_epoch:
        raise SystemExit(
            f"{progress} has {len(curve)} epochs; the checkpoint resumes at {trainer.start_epoch}"
        )
    return kept, kept[-1][0], kept[-1][1]


def partial_from_log(model_name: str, log_text: str, started: str | None = None) -> dict:
    """What an unfinished run's RecBole log shows: per-epoch train/valid seconds and scores.

    Used when a run cannot finish in the time available (RecBole SASRec on a busy 2-core
    machine needs minutes per epoch); the entry is marked ``complete: false``.
    """
    import re

    train = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", log_text)]
    valid = re.findall(r"epoch \d+ evaluating \[time: ([\d.]+)s, valid_score: ([\d.]+)\]", log_text)
    elapsed = [
        sum(train[: i + 1]) + sum(float(v[0]) for v in valid[: i + 1]) for i in range(len(valid))
    ]
    return {
        "model": model_name,
        "complete": False,
        "started": started,
        "epochs_run": len(valid),
        "epoch_train_s": train,
        "valid_curve": [float(v[1]) for v in valid],
        "elapsed_at_valid_s": elapsed,
    }


def partial_from_progress(model_name: str, curve: list[list[float]]) -> dict:
    """What an unfinished run's progress file shows: per epoch, wall and CPU seconds since the
    fit started and the validation NDCG@10 (a resumed run continues the same curve)."""
    best = _best_epoch(curve)
    return {
        "model": model_name,
        "complete": False,
        "epochs_run": len(curve),
        "valid_curve": [round(c[2], 4) for c in curve],
        "elapsed_at_valid_s": [round(c[0], 1) for c in curve],
        "cpu_at_valid_s": [round(c[1], 1) for c in curve],
        "best_epoch_so_far": best,
        "best_valid_so_far": curve[best][2],
        "cpu_to_best_so_far_s": curve[best][1],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["SASRec", "BPR"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recbole-run"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--partial-from",
        nargs=2,
        metavar=("MODEL", "LOG"),
        help="record an unfinished run from its RecBole log or its progress file (.json)",
    )
    parser.add_argument("--note", default=None, help="free text stored with a partial entry")
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="continue an interrupted run from its RecBole checkpoint (one model, one seed; "
        "its progress file in --workdir supplies the curve before the checkpoint)",
    )
    parser.add_argument(
        "--evaluate",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="write the record of a run that finished training but not its record, from its best "
        "checkpoint and the progress file in --workdir (one model, one seed)",
    )
    args = parser.parse_args(argv)
    if args.partial_from:
        name, log_file = args.partial_from
        results = json.loads(args.out.read_text()) if args.out.exists() else {"models": {}}
        text = Path(log_file).read_text()
        if log_file.endswith(".json"):
            entry = partial_from_progress(name, json.loads(text)["curve"])
        else:
            entry = partial_from_log(name, text)
        entry["note"] = args.note
        results["models"][name] = entry
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        return

    import recbole
    import torch

    for flag, value in (("--resume", args.resume), ("--evaluate", args.evaluate)):
        if value is not None and (len(args.models) > 1 or len(args.seeds) > 1):
            raise SystemExit(f"{flag} takes one run: give one model and one seed")
    if args.resume is not None:
        args.resume = args.resume.resolve()  # before chdir into the workdir
    if args.evaluate is not None:
        args.evaluate = args.evaluate.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)  # RecBole writes log/ and log_tensorboard/ into the cwd
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("models", {})
    results["environment"] = {
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }
    for name in args.models:
        runs = []
        for seed in args.seeds:
            progress = args.workdir / f"{name}-{seed}-progress.json"
            if args.evaluate is not None:
                runs.append(
                    evaluate_finished(
                        name, args.threads, seed, args.workdir, progress, args.evaluate
                    )
                )
            else:
                runs.append(run_one(name, args.threads, seed, args.workdir, progress, args.resume))
            res = runs[-1]
            print(
                f"{name} seed {seed}: test NDCG@10 {res['test_masked']['ndcg@10']:.4f} (masked)"
                f" / {res['test_recbole']['ndcg@10']:.4f} (recbole); best epoch "
                f"{res['best_epoch']} at {res['time_to_best_s']:.1f}s, fit {res['fit_s']:.1f}s",
                file=sys.stderr,
            )
        results["models"][name] = _summary(runs)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def _summary(runs: list[dict]) -> dict:
    """Medians over seeds (the figures compared), with every run kept."""
    import statistics

    med = statistics.median
    out: dict = {"model": runs[0]["model"], "complete": True, "seeds": [r["seed"] for r in runs]}
    for part in ("test_masked", "test_recbole"):
        out[part] = {k: med(r[part][k] for r in runs) for k in runs[0][part]}
    for key in (
        "time_to_best_s",
        "cpu_to_best_s",
        "fit_s",
        "best_epoch",
        "epochs_run",
        "best_valid_ndcg@10",
    ):
        out[key] = med(r[key] for r in runs)
    out["runs"] = runs
    return out


if __name__ == "__main__":
    main()
