"""benchmarks/bench_gpu.py runs end to end on the CPU (``--device cpu --quick``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_bench_gpu_quick_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from llmrec.paths import model_cache_dir

    if not list((model_cache_dir() / "hf").glob("gemma-3-270m*")):
        pytest.skip("no converted Gemma folder (load gemma3-270m through transformers once)")
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--device", "cpu"]
    cmd += ["--quick", "--inputs", str(tmp_path / "inputs"), "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=tmp_path, timeout=900)
    record = json.loads(out.read_text())
    assert record["device"] == "cpu" and record["agreement"]["fp32_ok"]
    assert not any(p.suffix == ".safetensors" for p in (tmp_path / "inputs").rglob("*"))
    assert all(r["llmrec_users_per_s"] > 0 for r in record["verbaliser"])
    assert all(record["rankers"][k]["users_per_s"] > 0 for k in ("verbaliser", "likelihood"))
    assert record["rankers"]["generation"]["lm_calls"] >= 1
    assert record["service"]["req_per_s_64_clients"] > 0 and record["tiger"]["epoch_s"] > 0
    ranked = record["sasrec"]["full_ranking"]  # ranked on the device: here the CPU itself
    assert ranked["users"] > 0 and ranked["same_top20_share"] == 1.0
    assert ranked["ndcg@10"] == ranked["cpu_ndcg@10"]
    assert set(record["sized"]) == {"qwen2.5-1.5b", "llama-7b"}
    assert 0.0 <= record["agreement"]["bfloat16"]["same_top10_share"] <= 1.0
