"""Property-based fuzzing of every operation in the OpenAPI spec (schemathesis): generated requests,
valid and not, must never get a 5xx, and every response must match the documented schema."""
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
CASES: Counter = Counter()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case):
    CASES[case.operation.label] += 1
    # Schema-valid is not the same as acceptable: a well-formed upload of a one-class CSV is a
    # correct 422. Every other check applies (no 5xx, documented status and body schema, …).
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(f"\nschemathesis: {sum(CASES.values())} generated cases over {len(CASES)} operations")
