"""Schemathesis fuzzes the API against its own OpenAPI spec (a few examples per operation, so it
stays fast): no 5xx, only documented status codes and content types, bodies that match the
documented schemas."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import BaseSchema, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.openapi import from_url

from recs_pipeline.adapters.publishing import SqlitePublisher
from recs_pipeline_tests.serving.conftest import AS_OF, StartApi, click, publish_version


@pytest.fixture
def api_schema(start_api: StartApi, sqlite_db: tuple[str, SqlitePublisher]) -> BaseSchema:
    url, publisher = sqlite_db
    publish_version(publisher, AS_OF)
    api = start_api(url)
    assert (
        api.events([click("u1", "a", 0), click("u2", "a", 1), click("u2", "b", 2)]).json()[
            "accepted"
        ]
        == 3
    )
    return from_url(f"{api.url}/openapi.json")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_spec(api_schema: BaseSchema, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/sites/{site}/events",
        "/v1/sites/{site}/recommendations",
        "/v1/sites/{site}/articles/{article_id}/similar",
        "/v1/sites/{site}/popular",
        "/readyz",
    }
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def fuzz(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(checks=CHECKS)

        if mode is GenerationMode.NEGATIVE and not list(operation.iter_parameters()):
            continue  # nothing to break in /healthz and friends
        fuzz()
    assert calls >= len(operations) * 2
