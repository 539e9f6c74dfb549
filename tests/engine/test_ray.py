"""The Ray engine against the local one on a real 2-node cluster (head on 127.0.0.2, worker on
127.0.0.3; Ray rewrites 127.0.0.1 to the host's address), started here and always torn down:
the same outputs bit for bit, the same ``compare`` metrics, and a SIGKILLed actor mid-job
losing and doubling nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

ray = pytest.importorskip("ray", exc_type=ImportError)  # not installed, or broken

from llmrec import engine  # noqa: E402
from llmrec.cli import main  # noqa: E402
from llmrec.data.dataset import Dataset  # noqa: E402
from llmrec.data.splits import leave_one_out  # noqa: E402
from llmrec.data.synthetic import synthetic  # noqa: E402
from llmrec.engine._ray import RayLM  # noqa: E402
from llmrec.errors import ConfigError  # noqa: E402
from llmrec.lm._server import free_port  # noqa: E402
from llmrec.lm.base import LanguageModel  # noqa: E402
from llmrec.lm.cache import CachedLM  # noqa: E402
from llmrec.lm.fake import FakeLM  # noqa: E402
from llmrec.lm.pool import default_pool  # noqa: E402
from llmrec.models.popularity import Popularity  # noqa: E402
from llmrec.models.registry import create_model  # noqa: E402
from llmrec.paradigms.direct import TwoStage, make_ranker  # noqa: E402
from llmrec.paradigms.embeddings.encoder import EncoderConfig, TextEncoder  # noqa: E402
from llmrec.paradigms.tokens.tags import TagConfig, generate_item_tags  # noqa: E402
from llmrec.runtime import RuntimeOptions  # noqa: E402
from llmrec.testing import tiny_dataset  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
NODES = ("127.0.0.2", "127.0.0.3")
#: Ray's node health checks, every second and 5 misses: a removed node is dead within ~6 s
HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5"}


def _start_node(args: list[str], temp: Path, log: Path) -> subprocess.Popen[bytes]:
    """``ray start --block`` in its own process group, with this checkout importable by its
    workers, its own temp folder (so its processes are its own) and health checks every second
    (so a lost node is noticed in seconds, not Ray's default half minute)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **HEALTH_CHECKS,
    }
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--num-cpus=3",
           f"--temp-dir={temp}", "--disable-usage-stats", *args]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def _node_processes(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """A node's processes: its ``ray start``, the raylet and the rest it started, and the
    raylet's workers (they run in sessions of their own, so the process group misses them)."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _end_node(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """End a node and every process it started: ``sig`` first, then SIGKILL what is left."""
    procs = _node_processes(proc)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    _gone, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1)


def _wait_for_nodes(address: str, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if not ray.is_initialized():
                ray.init(address=address, logging_level="WARNING")
            if sum(1 for node in ray.nodes() if node["Alive"]) >= n:
                return
        except ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {n}-node Ray cluster did not come up in {timeout_s:.0f} s")
        time.sleep(1.0)


class _Nodes:
    """The nodes of the test cluster: the head and a worker the tests may remove and add back."""

    def __init__(self, temp: Path) -> None:
        self.temp, self.log = temp, temp / "nodes.log"
        self.address = f"{NODES[0]}:{free_port()}"
        head = ["--head", f"--node-ip-address={NODES[0]}", f"--port={self.address.split(':')[1]}",
                "--include-dashboard=false"]  # fmt: skip
        self.head = _start_node(head, temp, self.log)
        self.worker: subprocess.Popen[bytes] | None = None

    def add_worker(self) -> None:
        args = [f"--address={self.address}", f"--node-ip-address={NODES[1]}"]
        self.worker = _start_node(args, Path(tempfile.mkdtemp(dir=self.temp)), self.log)
        _wait_for_nodes(self.address, 2, timeout_s=120)

    def remove_worker(self) -> None:
        """SIGKILL the worker node: its ``ray start``, raylet, agents and actors at once."""
        if self.worker is not None:
            _end_node(self.worker, signal.SIGKILL)
            self.worker = None

    def end(self) -> None:
        self.remove_worker()
        _end_node(self.head)


@pytest.fixture(scope="session")
def nodes() -> Iterator[_Nodes]:
    """A 2-node cluster this session started (and ends)."""
    temp = Path(tempfile.mkdtemp(prefix="llmrec-ray-", dir="/tmp"))  # unix sockets: short paths
    cluster = _Nodes(temp)
    try:
        time.sleep(3.0)
        cluster.add_worker()
        yield cluster
    except TimeoutError:
        pytest.fail(cluster.log.read_text(errors="replace")[-3000:])
    finally:
        engine.shutdown()
        ray.shutdown()
        cluster.end()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cluster(nodes: _Nodes) -> RuntimeOptions:
    """The runtime options of the 2-node cluster (the worker added back if a test removed it)."""
    if nodes.worker is None:
        nodes.add_worker()
    return RuntimeOptions(engine="ray", ray_address=nodes.address, ray_actors=2)


@pytest.fixture(autouse=True)
def _fresh_pools() -> Iterator[None]:
    """Every test builds its own actors and ends them (the cluster has room for a few pools)."""
    default_pool().clear()
    yield
    engine.shutdown()
    default_pool().clear(close=True)


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(500)]
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n)]


def test_encoding_is_bit_identical_and_only_cache_misses_travel(
    cluster: RuntimeOptions, tmp_path: Path
) -> None:
    texts = _texts(10_000)
    settings = EncoderConfig(encoder="fake:32", cache=False, chunk_size=1024)
    local, _ = TextEncoder(settings).encode(texts)
    on_ray = TextEncoder(settings.model_copy(update={"runtime": cluster}))
    remote, _ = on_ray.encode(texts)
    assert remote.dtype == local.dtype and np.array_equal(remote, local)
    assert on_ray.lm.stats.calls == 10  # one call per chunk, counted on the actors
    assert isinstance(on_ray.lm, RayLM)
    assert {w["node"] for w in on_ray.lm.workers} == set(NODES)  # one actor per machine

    # the cache stays here: with half the texts cached, only the other half goes out
    warm = CachedLM(FakeLM(dim=32), tmp_path / "a")
    warm.encode(texts[::2])
    warm.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    here = CachedLM(FakeLM(dim=32), tmp_path / "b")
    there = CachedLM(engine.engine_for(cluster).language_model("fake:32", {}), tmp_path / "a")
    resumed_here, info_here = TextEncoder(settings, lm=here).encode(texts)
    on_cluster = settings.model_copy(update={"runtime": cluster})
    resumed_there, info_there = TextEncoder(on_cluster, lm=there).encode(texts)
    assert np.array_equal(resumed_there, local) and np.array_equal(resumed_here, local)
    assert info_there.cache_hits == info_here.cache_hits == len(texts[::2])
    assert there.stats.as_dict() == here.stats.as_dict()
    assert 0 < there.stats.prompt_tokens < on_ray.lm.stats.prompt_tokens


@pytest.mark.slow
def test_real_minilm_encoding_is_bit_identical(cluster: RuntimeOptions) -> None:
    """sentence-transformers sorts a call's texts by length and pads per batch, so another cut
    changes the last bits (1.6e-7): each actor gets the local call whole, so none change."""
    pytest.importorskip("sentence_transformers")
    texts = _texts(1500)  # 3 to 11 words: lengths differ within every batch
    settings = EncoderConfig(encoder="minilm-l6", cache=False, chunk_size=256)
    local, _ = TextEncoder(settings).encode(texts)
    remote, _ = TextEncoder(settings.model_copy(update={"runtime": cluster})).encode(texts)
    assert np.array_equal(remote, local)


def _two_stage(kind: str, runtime: RuntimeOptions | None, split, batch_size: int) -> TwoStage:
    ranker = make_ranker({"kind": kind, "lm": "fake", "batch_size": batch_size})
    return TwoStage(Popularity(), ranker, n_candidates=10, runtime=runtime).fit(split.train)


def _ranked(
    kind: str, runtime: RuntimeOptions | None, split, users, batch_size: int = 4
) -> tuple[np.ndarray, dict]:
    model = _two_stage(kind, runtime, split, batch_size)
    scores = model.score(users, split.train.history())
    stats = model.ranker.stats
    summary = stats.summary()
    return scores, {
        "lm_calls": stats.lm_calls,
        "prompt_tokens": stats.prompt_tokens,
        "label_mass": stats.label_mass,
        "fallback_slots": summary["fallback_slots"],
        "users": stats.users,
    }


@pytest.mark.parametrize("kind", ["verbaliser", "likelihood", "generation"])
def test_direct_ranking_is_bit_identical(cluster: RuntimeOptions, kind: str) -> None:
    split = leave_one_out(synthetic(n_users=400, n_items=120, n_interactions=6000))
    users = split.test.active_users()
    local, local_stats = _ranked(kind, None, split, users)
    remote, remote_stats = _ranked(kind, cluster, split, users)
    assert np.array_equal(local, remote)
    assert local_stats == remote_stats  # counters summed from the actors, in the same order


@pytest.mark.slow
def test_the_issues_sizes_are_bit_identical(cluster: RuntimeOptions) -> None:
    """Issue 20's bar at its own sizes: 100,000 item texts encoded and 4,000 users ranked on the
    2-node cluster give the local engine's outputs bit for bit, and its counters."""
    texts = _texts(100_000)
    settings = EncoderConfig(encoder="fake:32", cache=False, chunk_size=4096)
    local, _ = TextEncoder(settings).encode(texts)
    on_ray = TextEncoder(settings.model_copy(update={"runtime": cluster}))
    remote, _ = on_ray.encode(texts)
    assert remote.shape == (100_000, 32) and np.array_equal(remote, local)
    assert on_ray.lm.stats.calls == 25  # one call per chunk of 4,096
    split = leave_one_out(synthetic(n_users=4200, n_items=200, n_interactions=80000))
    users = split.test.active_users()[:4000]
    assert len(users) == 4000
    ranked_here, stats_here = _ranked("verbaliser", None, split, users, batch_size=16)
    ranked_there, stats_there = _ranked("verbaliser", cluster, split, users, batch_size=16)
    assert np.array_equal(ranked_there, ranked_here) and stats_there == stats_here


def _ranked_through_a_fault(runtime: RuntimeOptions, fault: Callable[[RayLM], None]) -> RayLM:
    """Rank 1,500 users on ``runtime`` with ``fault(lm)`` done once 50 LM calls were answered:
    the outputs and counters must be the local engine's (every batch answered exactly once).
    Returns the ranker's LM (for what the test checks of its actors)."""
    split = leave_one_out(synthetic(n_users=1500, n_items=120, n_interactions=20000))
    users = split.test.active_users()
    local, local_stats = _ranked("verbaliser", None, split, users, batch_size=2)

    model = _two_stage("verbaliser", runtime, split, batch_size=2)
    lm = model.ranker.lm
    assert isinstance(lm, RayLM)
    done = threading.Event()

    def fault_when_busy() -> None:
        while lm.stats.calls < 50:
            time.sleep(0.005)
        fault(lm)
        done.set()

    thread = threading.Thread(target=fault_when_busy, daemon=True)
    thread.start()
    remote = model.score(users, split.train.history())
    thread.join(timeout=30)
    assert done.is_set(), "the job ended before the fault"
    assert np.array_equal(remote, local)
    stats = model.ranker.stats
    # every batch answered once: the calls counted on the actors are the batches, as locally
    assert stats.lm_calls == len(stats.call_ms) == local_stats["lm_calls"]
    assert stats.label_mass == local_stats["label_mass"]
    return lm


def test_a_sigkilled_actor_mid_job_loses_and_doubles_nothing(cluster: RuntimeOptions) -> None:
    victims: list[int] = []

    def kill_an_actor(lm: RayLM) -> None:
        victims.append(lm.where()[0][1])
        os.kill(victims[0], signal.SIGKILL)

    lm = _ranked_through_a_fault(cluster, kill_an_actor)
    assert victims[0] not in [pid for _, pid in lm.where()]  # the actor was restarted


@pytest.mark.timeout(90)
def test_a_worker_node_removed_mid_job_loses_and_doubles_nothing(
    cluster: RuntimeOptions, nodes: _Nodes
) -> None:
    """The worker node's raylet, agents and actor SIGKILLed at once: Ray notices the node dead
    (health checks), restarts its actor on the head and retries the call it was answering."""
    lm = _ranked_through_a_fault(cluster, lambda _lm: nodes.remove_worker())
    assert {node for node, _ in lm.where()} == {NODES[0]}  # both actors on the survivor now
    assert sum(1 for node in ray.nodes() if node["Alive"]) == 1


def _served_answers(
    runtime: RuntimeOptions, model_dir: Path, data: Dataset
) -> tuple[list[dict[str, Any]], LanguageModel, list[Any]]:
    """Each of 12 users' answer (items and scores, no timings) from an LM re-ranker served over
    HTTP under ``runtime``, the ranker's LM and, on Ray, its actors while the server ran (it
    has stopped since)."""
    from fastapi.testclient import TestClient

    from llmrec.serve import load_service
    from llmrec.serve.app import create_app
    from llmrec.serve.config import validate_serve_config

    raw = {"dataset": "tiny", "entries": [{"name": "rerank", "path": str(model_dir)}],
           "runtime": runtime.model_dump()}  # fmt: skip
    service = load_service(validate_serve_config(raw), data=data)
    with TestClient(create_app(service)) as client:
        answers = []
        for user in data.user_ids[:12]:
            r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
            assert r.status_code == 200, r.text
            answers.append({k: r.json()[k] for k in ("user_id", "items", "degraded")})
        lm = service.models["rerank"].model.ranker.lm
        actors = list(lm._pool.actors) if isinstance(lm, RayLM) else []
    return answers, lm, actors


def test_a_served_lm_ranker_answers_on_the_actors_as_locally(
    cluster: RuntimeOptions, tmp_path: Path
) -> None:
    """``llmrec serve --engine ray``: the same answers, from the actors, and the actors end
    when the server stops."""
    data = tiny_dataset()
    params = {"retriever": "itemknn", "n_candidates": 10, "ranker": {"kind": "verbaliser",
              "lm": "fake", "prompt": {"profile_fields": ["gender", "age"]}}}  # fmt: skip
    model_dir = create_model("two_stage", params).fit(data).save(tmp_path / "rerank")
    local, _, _ = _served_answers(RuntimeOptions(), model_dir, data)
    remote, lm, actors = _served_answers(cluster, model_dir, data)
    assert remote == local and not any(a["degraded"] for a in remote)
    assert isinstance(lm, RayLM) and lm.stats.calls > 0  # answered by the actors
    assert len(actors) == cluster.ray_actors
    assert all(_ends(actor, within_s=30) for actor in actors)


def _ends(actor: Any, within_s: float) -> bool:
    """Whether ``actor`` is dead within ``within_s`` (``ray.kill`` takes effect a moment later:
    a call sent right after it may still be answered)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.info.remote(), timeout=within_s)
        except ray.exceptions.RayActorError:
            return True
        time.sleep(0.2)
    return False


def test_tags_are_identical_with_retries_and_vocabulary_on_the_driver(
    cluster: RuntimeOptions,
) -> None:
    texts = _texts(400)
    cfg = TagConfig(batch_size=8, retries=1, min_count=1)
    local = generate_item_tags(FakeLM(fail_on="w7"), texts, cfg)  # some calls fail on purpose
    ray_engine = engine.engine_for(cluster)
    lm = ray_engine.language_model("fake", {"fail_on": "w7"})
    remote = generate_item_tags(lm, texts, cfg, engine=ray_engine)
    assert local.backend_errors > 0 and local.retried
    for name in ("tags", "parsed", "raw", "vocabulary", "failed", "retried", "backend_errors"):
        assert getattr(remote, name) == getattr(local, name), name


def test_compare_gives_identical_metrics_on_ray(cluster: RuntimeOptions, tmp_path: Path) -> None:
    config = {
        "dataset": "synthetic:80x50x900",
        "eval": {"n_negatives": 9},
        "probes": {"sample_users": 10, "latency_users": 3, "probe_users": 5, "slots": [0, 9]},
        "entries": [
            {"name": "pop", "paradigm": "classic", "model": "popularity"},
            {
                "name": "knn",
                "paradigm": "embeddings",
                "model": "textknn",
                "params": {"encoder": "fake:16"},
            },
            {
                "name": "rerank",
                "paradigm": "direct",
                "model": "two_stage",
                "protocol": "two-stage",
                "params": {"n_candidates": 8, "ranker": {"kind": "verbaliser", "lm": "fake"}},
            },
        ],
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    runs = {}
    for name, flags in (
        ("local", []),
        ("ray", ["--engine", "ray", "--ray-address", cluster.ray_address, "--ray-actors", "2"]),
    ):
        out = tmp_path / name
        assert main(["compare", "--config", str(path), "--out", str(out), "--quiet", *flags]) == 0
        records = out.glob("stages/*/record.json")
        runs[name] = {p.parent.name: json.loads(p.read_text()) for p in records}
    assert sorted(runs["local"]) == sorted(runs["ray"]) and len(runs["local"]) == 3
    for stage, record in runs["local"].items():
        other = runs["ray"][stage]
        quality = {k: v for k, v in record["metrics"].items() if not _timed(k)}
        assert quality == {k: v for k, v in other["metrics"].items() if not _timed(k)}, stage
        assert record["extra"]["stage_key"] == other["extra"]["stage_key"]
        assert record["extra"]["engine"] == {"kind": "local"}
        assert other["extra"]["engine"]["kind"] == "ray"
        assert other["extra"]["engine"]["nodes"] == 2


def _timed(metric: str) -> bool:
    """Metrics that measure time or memory (they differ between any two runs)."""
    return metric.endswith(("_s", "_ms", "_mb"))  # fit_s, latency_p95_ms, peak_rss_mb, ...


@pytest.mark.timeout(30)
def test_gpu_actors_on_a_cluster_without_gpus_are_a_one_line_error_not_a_hang(
    cluster: RuntimeOptions,
) -> None:
    """Ray would keep GPU actors pending forever here: llmrec counts the GPUs first, and the
    CPU actors ``auto`` chooses on this cluster still run."""
    for runtime, why in (
        (cluster.replace(device="cuda"), r"^device 'cuda' asked for the Ray actors, but the "),
        (cluster.replace(ray_actor_gpus=0.5), r"^ray: 2 actor\(s\) x 0.5 GPU cannot be placed"),
    ):
        with pytest.raises(ConfigError, match=why):
            engine.engine_for(runtime).language_model("fake", {})
    auto = engine.engine_for(cluster.replace(device="auto"))
    assert auto.language_model("fake", {}).encode(["a"]).shape == (1, 16)
    assert auto.describe()["actor_gpus"] == 0.0


def test_an_unreachable_cluster_is_a_one_line_error_not_a_hang() -> None:
    """``ray.init`` retries an address nobody answers on for minutes; llmrec asks first."""
    from llmrec.engine._ray import _check_reachable

    with pytest.raises(ConfigError, match=r"^ray: cannot reach the cluster at 127\.0\.0\.1:\d+ "):
        _check_reachable(f"127.0.0.1:{free_port()}")


def _batch_pair(job, src: Path, tmp_path: Path, cluster: RuntimeOptions, name: str) -> tuple:
    """A batch job's output folder on the local engine and on the cluster, and the manifests."""
    from llmrec.batch import run_batch

    local = run_batch(job, src, tmp_path / f"{name}-local")
    remote = run_batch(job, src, tmp_path / f"{name}-ray", runtime=cluster)
    return local, remote


def test_batch_jobs_are_bit_identical_on_ray_and_resume_with_only_missing_parts(
    cluster: RuntimeOptions, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmrec.batch import EncodeJob, TagsJob, run_batch

    src = tmp_path / "items.parquet"
    texts = _texts(20_000)
    pq.write_table(pa.table({"id": np.arange(20_000) * 3, "text": texts}), src)
    job = EncodeJob(encoder="fake:32", part_rows=1024)
    local, remote = _batch_pair(job, src, tmp_path, cluster, "encode")
    assert pq.read_table(tmp_path / "encode-ray").equals(pq.read_table(tmp_path / "encode-local"))
    assert remote["usage"] == local["usage"] and remote["usage"]["calls"] == 20
    assert remote["engine"]["kind"] == "ray" and remote["engine"]["nodes"] == 2
    assert remote["engine"]["actors_used"]

    # an interrupted job: two parts and _SUCCESS missing; the cluster computes only those two
    shutil.copytree(tmp_path / "encode-local", tmp_path / "resumed")
    for name in ("part-00003.parquet", "part-00017.parquet", "_SUCCESS"):
        (tmp_path / "resumed" / name).unlink()
    resumed = run_batch(job, src, tmp_path / "resumed", runtime=cluster)
    assert resumed["usage_this_run"]["calls"] == 2 and resumed["rows_this_run"] == 2048
    assert pq.read_table(tmp_path / "resumed").equals(pq.read_table(tmp_path / "encode-local"))

    tags = TagsJob(lm="fake", lm_options={"fail_on": "w7"}, part_rows=50,
                   tags=TagConfig(batch_size=8, retries=1, min_count=2, chat=True))  # fmt: skip
    pq.write_table(pa.table({"id": np.arange(400), "text": texts[:400]}), src)
    local, remote = _batch_pair(tags, src, tmp_path, cluster, "tags")
    assert pq.read_table(tmp_path / "tags-ray").equals(pq.read_table(tmp_path / "tags-local"))
    for key in ("usage", "failed", "vocabulary"):
        assert remote[key] == local[key], key
    assert local["failed"] > 0


def test_batch_rank_is_bit_identical_on_ray(cluster: RuntimeOptions, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmrec.batch import RankJob

    split = leave_one_out(synthetic(n_users=400, n_items=120, n_interactions=6000))
    _two_stage("verbaliser", None, split, batch_size=4).save(tmp_path / "model")
    pq.write_table(pa.table({"user": split.test.active_users()}), tmp_path / "users.parquet")
    job = RankJob(model=str(tmp_path / "model"), k=10, part_rows=64)
    local, remote = _batch_pair(job, tmp_path / "users.parquet", tmp_path, cluster, "rank")
    assert pq.read_table(tmp_path / "rank-ray").equals(pq.read_table(tmp_path / "rank-local"))
    assert remote["usage"] == local["usage"] and local["usage"]["calls"] > 0


def test_batch_actors_that_would_hold_every_cpu_are_refused(cluster: RuntimeOptions) -> None:
    """A Ray Data job whose actors hold every CPU hangs (ray#44687): a one-line error."""
    from llmrec.engine._ray_batch import _check_room

    engine.engine_for(cluster).connect()
    with pytest.raises(ConfigError, match="leave at least one for Ray Data"):
        _check_room(6.0)


def test_a_sigkilled_batch_actor_loses_and_doubles_no_part(
    cluster: RuntimeOptions, tmp_path: Path
) -> None:
    import pyarrow as pa

    from llmrec.batch import EncodeJob
    from llmrec.batch.jobs import make_worker
    from llmrec.engine._ray_batch import ray_answers

    job = EncodeJob(encoder="fake:32", part_rows=500)
    texts = _texts(15_000)
    rows = np.arange(15_000)
    pending = pa.table({"id": rows, "text": texts, "_row": rows, "_part": rows // 500})
    worker = make_worker(job)
    seen: dict[int, pa.Table] = {}
    for index, table, usage, actor in ray_answers(engine.engine_for(cluster), job, pending):
        if not seen:  # the first part is in: kill the actor that answered it, mid-job
            os.kill(int(actor.rsplit(":", 1)[1]), signal.SIGKILL)
        assert index not in seen and usage["calls"] == 1
        seen[index] = table
    assert sorted(seen) == list(range(30))
    for index, table in seen.items():
        part = pending.slice(index * 500, 500).drop_columns(["_row", "_part"])
        assert table.equals(worker(part)[0]), index
