"""The parts of ``bench_gpu.py`` that run through llmrec itself: larger LM sizes, the three
rankers over a full evaluation, TIGER, and the service's micro-batching (imported by it)."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: real architectures' shapes (public configs), built with random weights; a tokenizer of
#: another model is used with them (speed depends on lengths, not on which tokens)
SIZED = {
    "qwen2.5-1.5b": {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    },
    "llama-7b": {
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    },
}


def n_params(cfg: dict[str, Any]) -> int:
    """Parameters of a Llama/Qwen-shaped decoder (embeddings, attention, MLP, head)."""
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = h * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    heads = 1 if cfg["tie_word_embeddings"] else 2
    return heads * cfg["vocab_size"] * h + layers * per_layer


def free_bytes(device: str) -> int:
    """Free memory where a model would live (GPU memory, else the machine's available RAM)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def sized_model(name: str, tokenizer_dir: Path, out: Path, quick: bool) -> Path | str:
    """Save ``SIZED[name]`` with random weights (float32 on disk) and ``tokenizer_dir``'s
    tokenizer into ``out``; the reason, instead, when it would not fit in memory (twice: build
    and load) or, with ``quick``, over 4 GiB."""
    import torch
    import transformers

    cfg = dict(SIZED[name])
    if quick:
        cfg["num_hidden_layers"] = 2
    device = "cpu"  # built and saved on the CPU; loaded by HFCausalLM on the bench's device
    need = 2 * 4 * n_params(cfg)
    if need > 0.8 * free_bytes(device):
        return f"needs {need / 2**30:.1f} GiB, more than the memory free"
    if quick and need > 4 * 2**30:
        return f"needs {need / 2**30:.1f} GiB, over --quick's 4 GiB"
    config = transformers.AutoConfig.for_model(**cfg)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    del model
    return out


def sized_verbaliser(
    folder: Path, device: str, quick: bool, prompts: list[str], dtype: str
) -> dict[str, Any]:
    """Users/s of llmrec's ``score_next_batch`` at batch 1 and at its ``auto`` batch."""
    from llmrec.lm.hf import HFCausalLM

    labels = [f" {chr(ord('A') + i)}" for i in range(10)]
    row: dict[str, Any] = {}
    for batch in (1, "auto"):
        lm = HFCausalLM(folder, device=device, dtype=dtype, batch_size=batch)
        n = 2 if batch == 1 else len(prompts)
        lm.score_next_batch(prompts[:1], labels)  # warm-up
        tic = time.perf_counter()
        lm.score_next_batch(prompts[:n], labels)
        row[f"users_per_s_batch_{lm.batch_size}"] = n / (time.perf_counter() - tic)
        row["auto_batch"], row["auto_tokens"] = lm.batch_size, lm.max_batch_tokens
        del lm
    return row


def rankers(folder: Path, device: str, quick: bool, dtype: str) -> dict[str, Any]:
    """Each ranker kind over a two-stage evaluation on ML-100K (every test user; quick: a few),
    through llmrec's evaluate with the ``auto`` batch sizes: seconds and users/s."""
    from llmrec.data.splits import leave_one_out
    from llmrec.eval import evaluate
    from llmrec.lm.hf import HFCausalLM
    from llmrec.models.popularity import Popularity
    from llmrec.paradigms.direct import TwoStage, make_ranker
    from llmrec.runtime import RuntimeOptions

    split = leave_one_out(_movielens())
    users = split.test.active_users()
    lm = HFCausalLM(folder, device=device, dtype=dtype)
    out: dict[str, Any] = {"dataset": split.train.name}
    kinds = {"verbaliser": {}, "likelihood": {}, "generation": {"max_new_tokens": 80}}
    quick_users = {"verbaliser": 16, "likelihood": 8, "generation": 4}
    for kind, extra in kinds.items():
        if quick:
            extra = {**extra, "max_new_tokens": 8} if kind == "generation" else extra
        ranker = make_ranker({"kind": kind, **extra}, lm=lm)
        model = TwoStage(
            Popularity(), ranker, n_candidates=20, runtime=RuntimeOptions(device=device)
        )
        model.fit(split.train)
        chosen = users[: quick_users[kind]] if quick else users
        tic = time.perf_counter()
        evaluate(model, split, users=chosen, ks=(10,))
        seconds = time.perf_counter() - tic
        out[kind] = {
            "users": len(chosen),
            "seconds": seconds,
            "users_per_s": len(chosen) / seconds,
            "batch": model.lm_batch_size(),
            "lm_calls": ranker.stats.lm_calls,
        }
    return out


def _movielens() -> Any:
    """ML-100K when it is on disk (carry it to a GPU machine: it is small), else synthetic."""
    from llmrec.data import load_dataset

    try:
        return load_dataset("ml-100k")
    except Exception:  # not downloaded here: the figures then say which data they used
        return load_dataset("synthetic:943x1682x20000")


def tiger(device: str, quick: bool) -> dict[str, Any]:
    """TIGER (generative retrieval over semantic IDs) through llmrec: seconds per epoch. The
    item encoder is the hashing fake (no model files on a GPU machine); the decoder is TIGER's."""
    from llmrec.data import load_dataset
    from llmrec.data.splits import leave_one_out
    from llmrec.paradigms.tokens.generative import GenerativeRetrieval
    from llmrec.runtime import RuntimeOptions

    data = load_dataset("synthetic:200x300x4000") if quick else _movielens()
    split = leave_one_out(data)
    epochs = 1 if quick else 5
    model = GenerativeRetrieval(
        encoder="fake:64", epochs=epochs, runtime=RuntimeOptions(device=device, threads=2)
    )
    model.fit(split.train, split.valid)
    log = model.training_log()
    assert log is not None
    return {
        "dataset": data.name,
        "epochs_run": len(log.losses),
        "epoch_s": log.fit_s / max(len(log.losses), 1),
    }


def service(folder: Path, device: str, quick: bool, dtype: str) -> dict[str, Any]:
    """Requests/s through the service's micro-batcher (llmrec.serve.batcher) in front of a
    verbaliser two-stage model: 1 client at a time vs 64 concurrent clients."""
    from llmrec.data.dataset import UserHistory
    from llmrec.data.splits import leave_one_out
    from llmrec.lm.hf import HFCausalLM
    from llmrec.models.popularity import Popularity
    from llmrec.paradigms.direct import TwoStage, VerbaliserRanker
    from llmrec.runtime import RuntimeOptions
    from llmrec.serve.batcher import MicroBatcher

    split = leave_one_out(_movielens())
    lm = HFCausalLM(folder, device=device, dtype=dtype)
    model = TwoStage(
        Popularity(), VerbaliserRanker(lm=lm), runtime=RuntimeOptions(device=device)
    ).fit(split.train)
    hist = split.train.history()
    n = 16 if quick else 256

    def run(users: list[int]) -> list[Any]:
        rows = UserHistory.from_rows([hist.of(u) for u in users], split.train.n_items)
        recs = model.recommend(list(range(len(users))), 10, history=rows)
        return list(recs.items)

    async def load(clients: int, max_batch: int) -> float:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(
                "bench", run, executor=pool, window_s=0.01, max_batch=max_batch, max_queue=1024
            )
            sem = asyncio.Semaphore(clients)

            async def one(user: int) -> None:
                async with sem:
                    await batcher.submit(user)

            tic = time.perf_counter()
            await asyncio.gather(*(one(u % split.train.n_users) for u in range(n)))
            seconds = time.perf_counter() - tic
            await batcher.stop()
        return n / seconds

    one = asyncio.run(load(1, 1))
    many = asyncio.run(load(64, max(64, model.lm_batch_size())))
    return {"requests": n, "req_per_s_1_client": one, "req_per_s_64_clients": many,
            "gain": many / one}  # fmt: skip


__all__ = ["SIZED", "rankers", "service", "sized_model", "sized_verbaliser", "tiger"]
