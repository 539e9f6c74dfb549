"""GPU figures of issue 16, in one script (< 5 min on one GPU); prints a table, writes JSON.

The offline model packages are too large to carry to a GPU machine without a network, and speed
does not depend on weight values, so every LM is built from its real config and tokenizer with
random weights. ``--prepare DIR`` (run where the packages are) copies only the small config and
tokenizer files into ``DIR``; the GPU run reads them from there::

    python benchmarks/bench_gpu.py --prepare benchmarks/gpu_inputs          # here, no weights
    python benchmarks/bench_gpu.py --inputs benchmarks/gpu_inputs --device cuda
    python benchmarks/bench_gpu.py --device cpu --quick                     # the CPU check

It measures: verbaliser users/s (last-position logits of a ~530-token prompt) at batch 1 and at
the best batch, raw transformers and through llmrec's ``HFCausalLM.score_next_batch``, for the
SmolLM2 and Gemma architectures and Qwen2.5-1.5B- and Llama-7B-sized configs (skipped where
they do not fit in memory); each ranker kind (verbaliser, likelihood, generation) over the
943-user ML-100K evaluation through llmrec's ``evaluate``; the service's micro-batcher at 1 vs
64 clients; MiniLM encoding texts/s; SASRec and TIGER epoch times through llmrec
(``RuntimeOptions(device=...)``); SASRec's full-ranking evaluation of every test user, ranked on
the device with only the top K moved back, and its lists against the CPU's; and CPU-vs-device
agreement of one random model (fp32: max abs logit difference <= 1e-4; bf16: the same top-10 of
20 candidate labels for >= 95% of users).

Why the agreement model is not the stock random init: with tied random embeddings the labels'
logits after a prompt are all but tied (the 10th and 11th of 20 labels differ by less than
bf16 rounding), so bf16 reorders them whatever the device — 69-86% of users kept their top-10
on this CPU in bf16 vs fp32, a fact about the random model, not about a device. A trained
verbaliser's labels stand apart. The check therefore gives the model its own seeded LM head
(untied) whose label rows' norms differ by up to half a decade, which separates the label
logits as a trained head's are while each user still gets their own top-10.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_gpu_llmrec as G

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_gpu.json"
SMALL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.txt",
)
#: name -> where its config lives (a GGUF conversion folder in the model cache, or a package)
MODELS = {"smollm2-135m": "SmolLM2-135M", "gemma3-270m": "gemma-3-270m", "minilm-l6": None}


def prepare(out: Path) -> None:
    """Copy each model's config and tokenizer (never weights) into ``out/<name>``."""
    from llmrec.lm.registry import model_path
    from llmrec.paths import model_cache_dir

    for name, stem in MODELS.items():
        if stem is None:
            source = model_path(name)
        else:
            found = sorted((model_cache_dir() / "hf").glob(f"{stem}*"))
            if not found:
                raise SystemExit(
                    f"{name}: no converted folder in {model_cache_dir()}/hf; load it once"
                )
            source = found[0]
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        for file in SMALL_FILES:
            if (source / file).is_file():
                shutil.copy2(source / file, target / file)
        print(f"{name}: {sorted(p.name for p in target.iterdir())}")


def _random_causal(
    folder: Path,
    dtype: Any,
    device: str,
    quick: bool,
    seed: int = 0,
    labels: list[int] | None = None,
) -> Any:
    """A seeded random model of ``folder``'s architecture; with ``labels``, an untied LM head
    whose label rows are scaled by 10**(0..0.5) (see the module docstring)."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    if quick:  # a shallow copy of the architecture: the CPU check runs in seconds
        config.num_hidden_layers = 2
        if hasattr(config, "layer_types") and config.layer_types:
            config.layer_types = config.layer_types[:2]
    if labels is not None:
        config.tie_word_embeddings = False
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if labels is not None:
        spread = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            model.lm_head.weight[labels] *= 10 ** (0.5 * spread.float() / len(labels))[:, None]
    return model.to(dtype=dtype, device=device).eval()


def _prompts(tokenizer: Any, n: int, tokens: int) -> list[str]:
    words = [
        "user",
        "watched",
        "Toy",
        "Story",
        "then",
        "Heat",
        "then",
        "Casino",
        "and",
        "rated",
        "them",
        "highly",
    ]
    text = " ".join(words[i % len(words)] for i in range(tokens))
    return [f"User {u}: {text} Which item next? Answer:" for u in range(n)]


def _timed(fn: Any, device: str, repeats: int = 3) -> float:
    import torch

    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        tic = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - tic)
    return best


def verbaliser(name: str, folder: Path, device: str, quick: bool) -> dict[str, Any]:
    """Users/s of last-position logits over a batch of prompts, raw and through HFCausalLM."""
    import torch
    import transformers

    from llmrec.lm.hf import HFCausalLM
    from llmrec.runtime import resolve_dtype

    dtype_name = resolve_dtype("auto", device)
    dtype = getattr(torch, dtype_name)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = _random_causal(folder, dtype, device, quick)
    prompts = _prompts(tok, 8 if quick else 128, 60 if quick else 530)
    row: dict[str, Any] = {"model": name, "dtype": dtype_name, "raw_users_per_s": {}}
    for batch in [1, 4] if quick else [1, 8, 32, 64, 128]:
        enc = tok(prompts[:batch], return_tensors="pt", padding=True).to(device)

        def forward(enc: Any = enc) -> None:
            with torch.inference_mode():
                model(**enc, logits_to_keep=1, use_cache=False)

        row["raw_users_per_s"][batch] = batch / _timed(forward, device)
    with tempfile.TemporaryDirectory() as tmp:  # llmrec's own path over the same weights
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        best = max(row["raw_users_per_s"], key=row["raw_users_per_s"].get)
        lm = HFCausalLM(
            tmp, device=device, dtype=dtype_name, batch_size=best, max_batch_tokens=best * 1024
        )
        labels = [chr(ord("A") + i) for i in range(10)]
        seconds = _timed(lambda: lm.score_next_batch(prompts, labels), device, repeats=1)
        row["llmrec_users_per_s"] = len(prompts) / seconds
        row["llmrec_batch"] = best
    return row


def agreement(folder: Path, device: str, quick: bool) -> dict[str, Any]:
    """The same seeded random model on the CPU (fp32) and on ``device`` (fp32, bf16): the max
    abs difference of the 20 candidate labels' logits, and the share of users whose top-10
    labels (their top-10 candidates) are the same; the whole vocabulary's top-10 for reference."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder)
    labels = [tok(f" {chr(ord('A') + i)}", add_special_tokens=False)["input_ids"][-1]
              for i in range(20)]  # fmt: skip
    words = _prompts(tok, 1, 12)[0].split(": ", 1)[1].split()[:12]
    n, length = (64, 40) if quick else (128, 200)
    prompts = [
        f"User {u}: "
        + " ".join(words[(7 * u + i * (u % 5 + 1)) % len(words)] for i in range(length))
        + " Answer:"
        for u in range(n)
    ]
    enc = tok(prompts, return_tensors="pt", padding=True)

    def top10(logits: Any) -> Any:
        return logits.topk(10).indices.sort().values

    with torch.inference_mode():
        model = _random_causal(folder, torch.float32, "cpu", quick, labels=labels)
        cpu = model(**enc, logits_to_keep=1).logits[:, -1].float()
        out: dict[str, Any] = {"users": n}
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            model = _random_causal(folder, dtype, device, quick, labels=labels)
            got = model(**enc.to(device), logits_to_keep=1).logits[:, -1].float().cpu()
            enc = enc.to("cpu")
            out[name] = {
                "max_abs_diff": float((got[:, labels] - cpu[:, labels]).abs().max()),
                "same_top10_share": float(
                    (top10(got[:, labels]) == top10(cpu[:, labels])).all(-1).float().mean()
                ),
                "same_vocab_top10_share": float((top10(got) == top10(cpu)).all(-1).float().mean()),
            }
        out["distinct_top10"] = len({tuple(r) for r in top10(cpu[:, labels]).tolist()})
    out["fp32_ok"] = out["float32"]["max_abs_diff"] <= 1e-4
    out["bf16_ok"] = out["bfloat16"]["same_top10_share"] >= 0.95
    return out


def encoding(folder: Path, device: str, quick: bool) -> dict[str, Any]:
    """MiniLM-architecture texts/s at batch 256 (mean pooling), random weights."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder)
    config = transformers.AutoConfig.from_pretrained(folder)
    dtype = getattr(torch, "float32" if device == "cpu" else "bfloat16")
    model = transformers.AutoModel.from_config(config).to(device=device, dtype=dtype).eval()
    batch = 32 if quick else 256
    texts = [f"Movie {i} (1995). Comedy, Drama, a film about item {i}" for i in range(batch)]
    enc = tok(texts, return_tensors="pt", padding=True).to(device)

    def forward() -> None:
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
            (hidden * enc["attention_mask"][..., None]).sum(1)

    return {"batch": batch, "texts_per_s": batch / _timed(forward, device)}


def sasrec(device: str, quick: bool) -> dict[str, Any]:
    """SASRec through llmrec on the device: seconds per epoch and to the best epoch, and the
    full-ranking evaluation of every test user (ranked on the device, only the top K back)."""
    from llmrec.data import load_dataset
    from llmrec.data.splits import leave_one_out
    from llmrec.models.sasrec import SASRec
    from llmrec.runtime import RuntimeOptions

    data = load_dataset("synthetic:200x300x4000" if quick else "ml-100k")
    split = leave_one_out(data)
    epochs = 2 if quick else 200
    model = SASRec(epochs=epochs, runtime=RuntimeOptions(device=device, threads=2))
    model.fit(split.train, split.valid)
    log = model.train_log
    assert log is not None
    return {
        "dataset": data.name,
        "epochs_run": len(log.losses),
        "epoch_s": log.fit_s / max(len(log.losses), 1),
        "time_to_best_s": log.time_to_best_s,
        "best_valid_ndcg@10": log.best_score,
        "full_ranking": full_ranking(model, split),
    }


def full_ranking(model: Any, split: Any) -> dict[str, Any]:
    """Seconds of the full-ranking test evaluation of every user on the model's device (top K
    ranked there), and how its lists agree with the same weights evaluated on the CPU: the
    share of users with the identical top 20, and both NDCG@10 (on the CPU itself: equal)."""
    from llmrec.eval import evaluate
    from llmrec.models.base import Recommender

    evaluate(model, split, ks=(10, 20))  # warm-up: kernels, the device's allocator
    tic = time.perf_counter()
    on_device = evaluate(model, split, ks=(10, 20))
    seconds = time.perf_counter() - tic
    with tempfile.TemporaryDirectory() as tmp:
        cpu_model = Recommender.load(model.save(Path(tmp) / "m"), runtime={"device": "cpu"})
        on_cpu = evaluate(cpu_model, split, ks=(10, 20))
    return {
        "users": len(on_device.users),
        "seconds": seconds,
        "ndcg@10": on_device.metrics["ndcg@10"],
        "cpu_ndcg@10": on_cpu.metrics["ndcg@10"],
        "same_top20_share": float((on_device.ranked == on_cpu.ranked).all(axis=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepare", type=Path, help="copy configs/tokenizers here and stop")
    parser.add_argument("--inputs", type=Path, default=HERE / "gpu_inputs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="shallow models, small batches")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return
    from llmrec.runtime import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    if not args.inputs.is_dir():
        prepare(args.inputs)
    record: dict[str, Any] = {"device": device, "quick": args.quick}
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        tic = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - tic
        return out

    smol = args.inputs / "smollm2-135m"
    record["verbaliser"] = [
        timed(name, lambda name=name: verbaliser(name, args.inputs / name, device, args.quick))
        for name in ("smollm2-135m", "gemma3-270m")
    ]
    record["sized"] = timed("sized", lambda: sized(smol, device, args.quick))
    record["agreement"] = timed("agreement", lambda: agreement(smol, device, args.quick))
    with tempfile.TemporaryDirectory() as tmp:  # one random SmolLM2 for the llmrec paths
        import torch

        model = _random_causal(smol, torch.float32, "cpu", args.quick)
        model.save_pretrained(tmp)
        transformers_tokenizer(smol).save_pretrained(tmp)
        del model
        dtype = resolve_dtype("auto", device)
        record["rankers"] = timed(
            "rankers", lambda: G.rankers(Path(tmp), device, args.quick, dtype)
        )
        record["service"] = timed(
            "service", lambda: G.service(Path(tmp), device, args.quick, dtype)
        )
    record["encoding"] = timed(
        "encoding", lambda: encoding(args.inputs / "minilm-l6", device, args.quick)
    )
    record["sasrec"] = timed("sasrec", lambda: sasrec(device, args.quick))
    record["tiger"] = timed("tiger", lambda: G.tiger(device, args.quick))
    record["seconds"] = timings
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    report(record)


def transformers_tokenizer(folder: Path) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(folder)


def sized(tokenizer_dir: Path, device: str, quick: bool) -> dict[str, Any]:
    """llmrec's verbaliser at batch 1 and at its auto batch on the larger sized configs."""
    from llmrec.runtime import resolve_dtype

    tok = transformers_tokenizer(tokenizer_dir)
    prompts = _prompts(tok, 8 if quick else 128, 60 if quick else 530)
    out: dict[str, Any] = {}
    for name in G.SIZED:
        with tempfile.TemporaryDirectory() as tmp:
            folder = G.sized_model(name, tokenizer_dir, Path(tmp), quick)
            if isinstance(folder, str):
                out[name] = {"skipped": folder}
                continue
            dtype = resolve_dtype("auto", device)
            out[name] = G.sized_verbaliser(folder, device, quick, prompts, dtype)
    return out


def report(record: dict[str, Any]) -> None:
    """The table on stdout."""
    for row in record["verbaliser"]:
        raw = ", ".join(f"b{b}: {v:.0f}" for b, v in row["raw_users_per_s"].items())
        print(f"{row['model']:14} users/s {raw}; llmrec {row['llmrec_users_per_s']:.0f}")
    for name, row in record["sized"].items():
        print(f"{name:14} {row}")
    agree = record["agreement"]
    print(f"agreement fp32 {agree['float32']}; bf16 {agree['bfloat16']}")
    for kind in ("verbaliser", "likelihood", "generation"):
        r = record["rankers"][kind]
        rate = f"{r['users_per_s']:.1f}/s, batch {r['batch']}, {r['lm_calls']} LM calls"
        print(f"ranker {kind:10} {r['users']} users in {r['seconds']:.1f} s ({rate})")
    print(f"service {record['service']}")
    print(f"encoding {record['encoding']['texts_per_s']:.0f} texts/s; sasrec {record['sasrec']}")
    ranked = record["sasrec"]["full_ranking"]
    print(
        f"sasrec full ranking: {ranked['users']} users in {ranked['seconds']:.2f} s; NDCG@10 "
        f"{ranked['ndcg@10']:.4f} (cpu {ranked['cpu_ndcg@10']:.4f}); same top 20 for "
        f"{ranked['same_top20_share']:.1%} of users"
    )
    print(f"tiger {record['tiger']}; seconds {record['seconds']}")


if __name__ == "__main__":
    main()
