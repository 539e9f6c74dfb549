"""Importing a torch-trained model must not import torch: the networks load inside fit/load."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "llmrec.models.sasrec",
    "llmrec.models.bpr",
    "llmrec.paradigms.embeddings.lm_sasrec",
    "llmrec.paradigms.tokens.token_sasrec",
    "llmrec.paradigms.tokens.generative",
    "llmrec.paradigms.tokens.quantize",
    "llmrec.nets",
]


def test_importing_the_models_imports_no_torch() -> None:
    code = (
        f"import sys\nfor name in {MODULES!r}:\n    __import__(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('llmrec.nets.'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
