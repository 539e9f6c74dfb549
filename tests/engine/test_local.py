"""The engine option without Ray: the local engine is the reference (batches in order, one
after another, interleaved with the caller's progress), the options validate, and asking for
Ray without it installed is a one-line error naming the extra."""

from __future__ import annotations

import sys

import pytest

from llmrec import engine
from llmrec.cli import main
from llmrec.errors import ConfigError, MissingExtraError
from llmrec.runtime import RuntimeOptions, runtime_options


def test_local_engine_runs_batches_in_order_one_after_another() -> None:
    seen: list[str] = []

    def items() -> object:
        for i in range(3):
            seen.append(f"give {i}")
            yield i

    def body(i: int) -> int:
        seen.append(f"run {i}")
        return i * 10

    local = engine.engine_for(RuntimeOptions())
    assert local is engine.engine_for(None) and local.kind == "local"
    assert list(local.map(body, items())) == [0, 10, 20]  # type: ignore[arg-type]
    assert seen == ["give 0", "run 0", "give 1", "run 1", "give 2", "run 2"]
    assert engine.describe(None) == {"kind": "local"}


def test_engine_options_validate() -> None:
    rt = runtime_options({"engine": "ray", "ray_address": "10.0.0.5:6379", "ray_actors": 4})
    assert (rt.engine, rt.ray_address, rt.ray_actors) == ("ray", "10.0.0.5:6379", 4)
    assert runtime_options({"ray_address": "auto"}).ray_address == "auto"
    for bad in ({"engine": "spark"}, {"ray_address": "http://x"}, {"ray_actors": 0}):
        with pytest.raises(ConfigError, match="runtime: "):
            runtime_options(bad)


def test_ray_missing_is_a_one_line_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    monkeypatch.delitem(sys.modules, "llmrec.engine._ray", raising=False)
    engine.shutdown()
    with pytest.raises(MissingExtraError, match=r"pip install 'llmrec\[ray\]'"):
        engine.engine_for(RuntimeOptions(engine="ray"))


def test_cli_engine_flags_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "--dataset", "synthetic:20x10x100", "--quick", "--out", "/nonexistent"]
    assert main([*argv, "--engine", "ray", "--ray-address", "http://x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmrec: error: runtime: ray_address: must be local, auto or host:port")
    assert len(err.splitlines()) == 1


def test_an_lm_loaded_here_gets_its_batches_one_at_a_time_under_any_engine() -> None:
    """A model given by hand (llama.cpp takes one call at a time) is never called from several
    threads, even when the runtime asks for Ray; choosing so imports nothing."""
    from llmrec.lm.fake import FakeLM

    lm = FakeLM()
    assert not lm.answers_remotely
    assert engine.engine_of(RuntimeOptions(engine="ray"), lm).kind == "local"
    assert engine.engine_of(None, lm).kind == "local"


def test_a_cache_answers_where_its_model_does(tmp_path) -> None:
    from llmrec.lm.cache import CachedLM
    from llmrec.lm.fake import FakeLM

    class Remote(FakeLM):
        @property
        def answers_remotely(self) -> bool:
            return True

    assert not CachedLM(FakeLM(), tmp_path / "a").answers_remotely
    assert CachedLM(Remote(), tmp_path / "b").answers_remotely
