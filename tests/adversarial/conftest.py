"""The adversarial suite's one way to judge a fault: the CLI ends with exactly one line
``llmrec: error: …`` on stderr (no traceback), or answers with a documented, flagged fallback.

Each area has its own file (``test_lm.py``, ``test_data.py``, ``test_runs.py``,
``test_serve.py``); every test there is one distinct hostile input or fault, named by what it
tries, and also checks that nothing half-written or poisoned was left behind.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmrec.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON (RFC 8259)")


def strict_json(text: str) -> object:
    """Parse ``text`` as RFC 8259 JSON: ``NaN``/``Infinity`` are refused, as JavaScript,
    Go and serde refuse them."""
    return json.loads(text, parse_constant=_refuse_constant)


def assert_one_line_error(result: CliResult, *fragments: str) -> str:
    """The command failed with one ``llmrec: error:`` line naming every fragment; no traceback."""
    assert result.code != 0, f"expected a failure, got exit 0; stdout={result.out!r}"
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert "Traceback" not in result.err, result.err
    errors = [line for line in lines if line.startswith("llmrec: error: ")]
    assert len(errors) == 1, f"expected one 'llmrec: error:' line, stderr was:\n{result.err}"
    for fragment in fragments:
        assert fragment.lower() in errors[0].lower(), f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def assert_finite_tree(obj: object, where: str = "$") -> None:
    """No float in ``obj`` (nested dicts/lists) is NaN or infinite."""
    if isinstance(obj, float):
        assert math.isfinite(obj), f"non-finite number at {where}"
    elif isinstance(obj, dict):
        for key, value in obj.items():
            assert_finite_tree(value, f"{where}.{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            assert_finite_tree(value, f"{where}[{i}]")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``llmrec ARGS`` in this process (fast); an escaping exception fails the test."""

    def run(*args: str) -> CliResult:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_cli_subprocess(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float = 120, **kwargs: object
) -> CliResult:
    """Run ``python -m llmrec ARGS`` in a child process (for signals, interpreter exits)."""
    proc = subprocess.run(
        [sys.executable, "-m", "llmrec", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        **kwargs,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
