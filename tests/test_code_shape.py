"""The size bars of issue 15, kept: no module in llmrec/ over 500 lines, no function over 80."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.syntax import parse

PACKAGE = Path(__file__).resolve().parents[1] / "llmrec"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules: {long}"


def test_no_function_is_over_80_lines() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({size})")
    assert not long, f"shorten these functions: {long}"


def test_the_checks_see_the_package() -> None:
    assert len(_modules()) > 100  # a wrong path would pass the two checks above vacuously
