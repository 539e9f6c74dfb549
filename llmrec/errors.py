"""The exceptions llmrec raises on purpose: each carries a one-line message naming the problem.

The CLI prints ``str(error)`` of any :class:`LlmrecError` as a single line and exits non-zero;
anything else is a bug.
"""

from __future__ import annotations


class LlmrecError(Exception):
    """Base of every error llmrec raises deliberately."""


class DataError(LlmrecError):
    """Input data is malformed: the message names the file, row and column where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file = file
        self.row = row
        self.column = column


class UnknownIdError(LlmrecError, KeyError):
    """A user or item id is not in the dataset."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(LlmrecError, ValueError):
    """A configuration value is invalid or names something that does not exist."""


class NotFittedError(LlmrecError, RuntimeError):
    """A model was asked to recommend before ``fit`` or ``load``."""


class BackendError(LlmrecError, RuntimeError):
    """A language-model backend failed: server down, timeout, malformed answer, missing extra."""


class MissingExtraError(LlmrecError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'llmrec[{extra}]'"
        )


def require(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module.split(".")[0], extra) from exc
