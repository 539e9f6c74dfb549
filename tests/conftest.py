"""Suite-wide settings: passive OpenMP waiting before any test imports torch (spin-waiting
threads collapse on the 2 shared cores this suite runs on)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import pytest


@pytest.fixture(autouse=True)
def _fresh_lm_pool() -> object:
    """Each test starts with an empty default LM pool: no LM leaks from one test to the next.
    Session-scoped real models are fixtures of their own, outside the pool."""
    from llmrec.lm.pool import default_pool

    default_pool().clear()
    yield
    default_pool().clear()


@pytest.fixture(autouse=True)
def _progress_off():
    """Progress reporting is process state: each test starts and ends with it off."""
    from llmrec import progress

    progress.disable()
    yield
    progress.disable()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A folder holding a tiny random-weight Llama and its tokenizer (tests/tiny_lm.py)."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")
    from tests.tiny_lm import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
