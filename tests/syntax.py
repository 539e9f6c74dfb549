"""Parsing llmrec's own modules for the tests that read its code (size bars, import graph)."""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse(path: Path) -> ast.Module:
    """``path``'s syntax tree, parsed with the garbage collector paused: CPython 3.11 raises
    ``SystemError: AST constructor recursion depth mismatch`` when a finaliser (left by an
    earlier test's Ray or HTTP objects) runs Python code in the middle of building the tree."""
    gc.collect()
    gc.disable()
    try:
        return ast.parse(path.read_text())
    finally:
        gc.enable()
