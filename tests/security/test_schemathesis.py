"""Property-based fuzzing of the OpenAPI spec (schemathesis), every check on: generated requests,
valid and not, never get a 5xx; every response matches the documented schema; a request the
schema calls valid is accepted (positive data acceptance), so the document is as strict as the
service. The stateful phase follows the OpenAPI links from each create to the operations that
read, cancel or delete what it made."""
import uuid
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.config import get_settings
from app.main import create_app

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
CASES: Counter = Counter()
# Uploads whose file *content* is validated (a CSV with two classes, loadable weights): a
# schema can't say that, so a schema-valid upload of arbitrary bytes is rightly a 422. Every
# other operation must accept what its schema allows.
CONTENT_CHECKED = {"POST /v1/datasets", "POST /v1/base-models"}
# List routes whose `after` must be an id of that list (else 400 invalid_cursor): a schema can
# say an id's shape, not whether it exists, so a schema-valid made-up cursor is rightly refused.
CURSOR_CHECKED = {"GET /v1/datasets", "GET /v1/jobs", "GET /v1/models", "GET /v1/webhooks",
                  "GET /v1/webhooks/{webhook_id}/deliveries", "GET /v1/models/{model_id}/exports"}


def _excluded(case) -> list:
    if case.operation.label in CONTENT_CHECKED:
        return [positive_data_acceptance]
    if case.operation.label in CURSOR_CHECKED and (case.query or {}).get("after"):
        return [positive_data_acceptance]
    return []


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case):
    CASES[case.operation.label] += 1
    case.call_and_validate(excluded_checks=_excluded(case))


def test_every_create_links_to_what_reads_it():
    spec = create_app().openapi()
    ops = {o["operationId"] for p in spec["paths"].values() for o in p.values()}
    links = {o["operationId"]: set(o["responses"]["201"].get("links", {}))
             for p in spec["paths"].values() for o in p.values() if "201" in o["responses"]}
    linked = {op for op, targets in links.items() if targets}
    assert {"create_dataset", "create_job", "create_model", "create_key",
            "create_webhook"} <= linked
    assert all(targets <= ops for targets in links.values())
    assert {"get_job", "cancel_job", "job_events"} <= links["create_job"]


class Stateful(schema.as_state_machine()):
    """Each run (a sequence of linked calls) works in a tenant of its own, empty at the start:
    what a list returns, and so what the next step draws from, depends on that run alone."""

    def setup(self):
        self._tenant_before = get_settings().default_tenant
        get_settings().default_tenant = f"st-{uuid.uuid4().hex[:12]}"

    def teardown(self):
        get_settings().default_tenant = self._tenant_before

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        CASES[f"stateful {case.operation.label}"] += 1
        case.validate_response(response, additional_checks=additional_checks,
                               excluded_checks=_excluded(case), transport_kwargs=kwargs or None,
                               recorder=getattr(self, "recorder", None))


TestStateful = Stateful.TestCase
# database=None: each run starts afresh (a replayed example meets a different database state)
TestStateful.settings = settings(max_examples=40, stateful_step_count=8, deadline=None,
                                 database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    linked = sum(n for k, n in CASES.items() if k.startswith("stateful"))
    print(f"\nschemathesis: {sum(CASES.values())} generated cases over {len(CASES)} operations "
          f"({linked} in the stateful phase)")
