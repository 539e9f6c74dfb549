"""A schema-driven fuzz of the running service: schemathesis reads the service's own OpenAPI
document and throws generated (valid and invalid) requests at every operation over real HTTP.
Every response must be a non-5xx that matches the documented schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (dev)")
from hypothesis import HealthCheck, settings  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def live_url(request: pytest.FixtureRequest) -> Iterator[str]:
    from llmrec.serve.app import create_app
    from tests.serve.live import LiveServer

    make_service: Callable[..., Any] = request.getfixturevalue("module_service_factory")
    with LiveServer(create_app(make_service())) as server:
        yield server.url


@pytest.fixture(scope="module")
def module_service_factory(serve_raw: dict[str, Any], serve_data: Any) -> Callable[..., Any]:
    from llmrec.serve import load_service
    from llmrec.serve.config import validate_serve_config

    return lambda **kw: load_service(validate_serve_config({**serve_raw, **kw}), data=serve_data)


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_url}/openapi.json")


def _operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def test_every_documented_operation_is_fuzzed(api_schema: Any) -> None:
    paths = {op.path for op in _operations(api_schema)}
    assert {"/v1/recommend", "/v1/position-bias", "/v1/items/{item_id}", "/v1/users"} <= paths


def test_no_operation_answers_5xx_or_off_schema(api_schema: Any) -> None:
    from hypothesis import given

    failures: list[str] = []
    for operation in _operations(api_schema):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate()

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
