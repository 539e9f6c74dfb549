"""``llmrec serve``: the trained models of a run or compare folder behind an HTTP service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from llmrec.cli._format import RUNTIME_FLAGS, add_runtime
from llmrec.errors import ConfigError, require


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve trained models (a run or compare folder) over HTTP, with a web page",
        description="Binds 127.0.0.1 unless --host says otherwise. The page is at /, the API "
        "schema at /docs and /openapi.json, Prometheus metrics at /metrics.",
    )
    p.add_argument(
        "source",
        nargs="?",
        type=Path,
        metavar="RUN_DIR",
        help="a run folder (llmrec run) or compare folder (llmrec compare)",
    )
    p.add_argument("--config", type=Path, help="YAML serve config (see docs/serve.md)")
    p.add_argument("--dataset", help="dataset the models were trained on (default: recorded)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--api-key-file",
        type=Path,
        help="file holding the API key that /v1 and /metrics require (kept off the command line)",
    )
    p.add_argument("--lm-budget-ms", type=float, help="LM time before the retriever answers")
    p.add_argument("--window-ms", type=float, help="micro-batching window for LM models")
    p.add_argument(
        "--max-batch", help="most requests per LM forward pass (auto: 8 on the CPU, 128 on a GPU)"
    )
    p.add_argument("--max-queue", type=int, help="most waiting requests per model (then 503)")
    p.add_argument("--no-batching", action="store_true", help="answer each request alone")
    p.add_argument("--only", action="append", default=[], metavar="ENTRY", help="serve only these")
    add_runtime(p)  # --engine ray: the served LMs answer on a pool of Ray actors
    p.set_defaults(func=cmd_serve)


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~llmrec.serve.ServeConfig` the arguments describe: the folder's or file's
    config with the flags on top. A flag out of range is a one-line error naming the flag."""
    from llmrec.serve import config_from_folder, load_serve_config

    if (args.source is None) == (args.config is None):
        raise ConfigError("give a run/compare folder or --config FILE (one of them)")
    if args.config is not None:
        config = load_serve_config(args.config)
    else:
        if not args.source.is_dir():
            raise ConfigError(f"{args.source} is not a folder")
        config = config_from_folder(args.source)
    entries = [e for e in config.entries if not args.only or e.name in args.only]
    missing = sorted(set(args.only) - {e.name for e in config.entries})
    if missing:
        known = ", ".join(e.name for e in config.entries)
        raise ConfigError(f"--only names unknown entries {missing}; entries: {known}")
    raw = config.model_dump()
    raw["entries"] = [e.model_dump() for e in entries]
    return _validated(raw, _set_flags(raw, args))


def _set_flags(raw: dict[str, Any], args: argparse.Namespace) -> dict[tuple[str, ...], str]:
    """Put each given flag's value into ``raw``; returns how each key so set was given (``--port
    70000``; the API key file without its content), for messages."""
    given: dict[tuple[str, ...], str] = {}
    for flag, where, value in _flag_values(args):
        if value is None:
            continue
        *parents, last = where
        target = raw
        for part in parents:
            target = target[part]
        target[last] = value
        given[where] = flag if where == ("api_key",) else f"{flag} {value}"
    return given


def _flag_values(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...], Any]]:
    """(flag, where in the config, value or ``None`` when not given) of each override."""
    return [
        ("--dataset", ("dataset",), args.dataset),
        ("--host", ("host",), args.host),
        ("--port", ("port",), args.port),
        ("--api-key-file", ("api_key",), _api_key(args.api_key_file)),
        ("--lm-budget-ms", ("lm_budget_ms",), args.lm_budget_ms),
        ("--window-ms", ("batching", "window_ms"), args.window_ms),
        ("--max-batch", ("batching", "max_batch"), args.max_batch),
        ("--max-queue", ("batching", "max_queue"), args.max_queue),
        ("--no-batching", ("batching", "enabled"), False if args.no_batching else None),
        *[(f"--{k.replace('_', '-')}", ("runtime", k), getattr(args, k)) for k in RUNTIME_FLAGS],
    ]


def _api_key(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read --api-key-file {path}: {why}") from None
    if not key:
        raise ConfigError(f"{path} is empty")
    return key


def _validated(raw: dict[str, Any], flags: dict[tuple[str, ...], str]) -> Any:
    """``raw`` as a ServeConfig; a failing value a flag set is reported under the flag's name,
    any other as the config's own one-line error."""
    from pydantic import ValidationError

    from llmrec.config import problem
    from llmrec.serve.config import ServeConfig, validate_serve_config

    try:
        return ServeConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            flag = flags.get(tuple(str(p) for p in err["loc"]))
            if flag is not None:
                raise ConfigError(f"{flag}: {problem(err)}") from None
    return validate_serve_config(raw)


def cmd_serve(args: argparse.Namespace) -> int:
    from llmrec.serve import load_service
    from llmrec.serve.app import create_app

    uvicorn: Any = require("uvicorn", "serve")
    config = build_config(args)
    if config.port == 0:  # pick the port here, so the address printed below is the real one
        from llmrec.lm._server import free_port

        config = config.model_copy(update={"port": free_port()})
    print(f"llmrec serve: loading {len(config.entries)} model(s) ...", file=sys.stderr)
    service = load_service(config)
    app = create_app(service)
    names = ", ".join(f"{s.name} ({s.paradigm})" for s in service.models.values())
    print(f"llmrec serve: {names} on http://{config.host}:{config.port}/", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
    return 0
