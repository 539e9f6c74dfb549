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
