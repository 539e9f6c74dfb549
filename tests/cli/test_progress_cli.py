"""A long-enough job (an LM re-ranking two thousand users with the fake LM, a few seconds) run
as a user runs it: under a pseudo-terminal, live bars with counts; through a pipe, a few dozen
plain lines; an estimate before each LM phase; with ``--json``, nothing but JSON on stdout."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB = [
    "run",
    "--model",
    "two_stage",
    "--dataset",
    "synthetic:2000x300x16000",
    "--set",
    "params.ranker.kind=verbaliser",
    "--set",
    "params.ranker.lm=fake",
]
COUNTS = re.compile(r"evaluate (valid|test):.*\b(\d+)/(\d+) \[")


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, LLMREC_HOME=str(home), PYTHONPATH=str(ROOT), COLUMNS="100")
    env.pop("NO_COLOR", None)
    return env


def _args(tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "llmrec", *JOB, "--out", str(tmp / "runs"), *extra]


def _run_with_stderr_on_a_pty(args: list[str], env: dict[str, str]) -> tuple[str, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run(
        args, stdout=subprocess.PIPE, stderr=slave, env=env, timeout=300, check=False
    )
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return proc.stdout.decode(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def test_piped_log_is_a_few_dozen_lines_with_estimates_and_json_stdout(
    tmp_path: Path, home: Path
) -> None:
    proc = subprocess.run(
        _args(tmp_path, "--json"),
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)  # stdout is one JSON document, nothing else
    assert record["model"] == "two_stage"
    err = proc.stderr
    assert "\r" not in err
    lines = err.splitlines()
    progress_lines = [line for line in lines if COUNTS.search(line)]
    assert 10 <= len(progress_lines) <= 36, err
    assert len(lines) <= 48, err
    # users done / total throughout, ending at the total
    last = {m.group(1): m for line in progress_lines if (m := COUNTS.search(line))}
    assert last["valid"].group(2) == last["valid"].group(3)
    assert last["test"].group(2) == last["test"].group(3)
    # an estimate before each LM phase: the first from nothing measured, the next measured
    estimates = [i for i, line in enumerate(lines) if "users with fake (verbaliser)" in line]
    firsts = [
        next(i for i, x in enumerate(lines) if f"evaluate {p}:" in x) for p in ("valid", "test")
    ]
    assert len(estimates) == 2
    assert estimates[0] < firsts[0] < estimates[1] < firsts[1]
    assert "at the last measured rate" in lines[estimates[1]]
    # the opening is short: everything before the first progress line
    assert firsts[0] <= 10
    assert all(len(line) <= 200 for line in lines[: firsts[0]])


def test_terminal_shows_live_bars_with_counts(tmp_path: Path, home: Path) -> None:
    out, err = _run_with_stderr_on_a_pty(_args(tmp_path), _env(home))
    assert "ndcg@10" in out  # the table still goes to stdout
    assert "\r" in err  # redrawn in place
    frames = re.split(r"[\r\n]+", err)
    counts = [m for frame in frames if (m := COUNTS.search(frame))]
    assert any(m.group(2) != m.group(3) for m in counts)  # seen part-way
    assert any(m.group(2) == m.group(3) for m in counts)
    assert any("<" in frame and "user/s" in frame for frame in frames)  # time left and rate
    assert "at the last measured rate" in err


def test_quiet_prints_nothing_on_stderr(tmp_path: Path, home: Path) -> None:
    proc = subprocess.run(
        [*_args(tmp_path, "--quiet"), "--set", "params.n_candidates=3"],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        (["run", "--model", "popularity", "--dataset", "synthetic:50x20x400"], "nothing was kept"),
        (["compare", "--dataset", "synthetic:50x20x400", "--quick"], "finished stages are kept"),
    ],
)
def test_ctrl_c_ends_with_one_line_saying_what_was_kept(
    argv: list[str], kept: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import llmrec.data
    from llmrec.cli import main

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(llmrec.data, "load_dataset", interrupted)
    assert main([*argv, "--out", str(tmp_path / "out"), "--store", str(tmp_path / "s")]) == 130
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("llmrec: interrupted; ")]
    assert len(lines) == 1 and kept in lines[0], err
    assert "Traceback" not in err
