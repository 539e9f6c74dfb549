"""GPU figures of issue 16, in one script (< 5 min on one GPU); prints a table, writes JSON.

The offline model packages are too large to carry to a GPU machine without a network, and speed
does not depend on weight values, so every LM is built from its real config and tokenizer with
random weights. ``--prepare DIR`` (run where the packages are) copies only the small config and
tokenizer files into ``DIR``; the GPU run reads them from there::

    python benchmarks/bench_gpu.py --prepare benchmarks/gpu_inputs          # here, no weights
    python benchmarks/bench_gpu.py --inputs benchmarks/gpu_inputs --device cuda
    python benchmarks/bench_gpu.py --device cpu --quick                     # the CPU check

It measures: verbaliser users/s (last-position logits of a ~530-token prompt) at batch 1 and at
the best batch, raw transformers and through llmrec's ``HFCausalLM.score_next_batch``; MiniLM
encoding texts/s; SASRec epoch time on ML-100K through llmrec (``RuntimeOptions(device=...)``);
and CPU-vs-device agreement of one random model (fp32: max abs logit difference <= 1e-4; bf16:
the same top-10 tokens for >= 95% of prompts).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

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


def _random_causal(folder: Path, dtype: Any, device: str, quick: bool, seed: int = 0) -> Any:
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    if quick:  # a shallow copy of the architecture: the CPU check runs in seconds
        config.num_hidden_layers = 2
        if hasattr(config, "layer_types") and config.layer_types:
            config.layer_types = config.layer_types[:2]
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
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
    """The same random model on the CPU (fp32) and on ``device`` (fp32, bf16)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(
        _prompts(tok, 16 if quick else 64, 40 if quick else 200), return_tensors="pt", padding=True
    )
    with torch.inference_mode():
        cpu = _random_causal(folder, torch.float32, "cpu", quick)(**enc, logits_to_keep=1).logits
        out: dict[str, Any] = {}
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            model = _random_causal(folder, dtype, device, quick)
            got = model(**enc.to(device), logits_to_keep=1).logits.float().cpu()
            enc = enc.to("cpu")
            same = got.topk(10).indices.sort().values == cpu.topk(10).indices.sort().values
            out[name] = {
                "max_abs_diff": float((got - cpu).abs().max()),
                "same_top10_share": float(same.all(dim=-1).float().mean()),
            }
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
    """SASRec through llmrec on the device: seconds per epoch and to the best epoch."""
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
    from llmrec.runtime import resolve_device

    device = resolve_device(args.device)
    if not args.inputs.is_dir():
        prepare(args.inputs)
    record: dict[str, Any] = {"device": device, "quick": args.quick}
    record["verbaliser"] = [
        verbaliser(name, args.inputs / name, device, args.quick)
        for name in ("smollm2-135m", "gemma3-270m")
    ]
    record["agreement"] = agreement(args.inputs / "smollm2-135m", device, args.quick)
    record["encoding"] = encoding(args.inputs / "minilm-l6", device, args.quick)
    record["sasrec"] = sasrec(device, args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for row in record["verbaliser"]:
        raw = ", ".join(f"b{b}: {v:.0f}" for b, v in row["raw_users_per_s"].items())
        print(f"{row['model']:14} users/s {raw}; llmrec {row['llmrec_users_per_s']:.0f}")
    print(f"agreement {record['agreement']}")
    print(f"encoding {record['encoding']['texts_per_s']:.0f} texts/s; sasrec {record['sasrec']}")


if __name__ == "__main__":
    main()
