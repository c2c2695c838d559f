"""The SDK's hand-written types (clients/python/adapt/types.py) against the server's OpenAPI
schema (`create_app().openapi()`, components/schemas): every field the server marks required is
declared by the SDK type, every field the SDK requires (no default) is one the server sends, and
the JSON types of the fields both declare are compatible. No server running: the app is built."""
from typing import Any

import pytest

from adapt import types as sdk

# SDK type -> the server's response schema it mirrors (names as in components/schemas).
MIRRORS: dict[type[sdk.Resource], str] = {
    sdk.Dataset: "DatasetOut",
    sdk.DatasetQuality: "DatasetQuality",
    sdk.QualityReport: "QualityReportOut",
    sdk.Job: "JobOut",
    sdk.JobEvent: "EventOut",
    sdk.Metric: "MetricOut",
    sdk.Checkpoint: "CheckpointOut",
    sdk.Model: "ModelOut",
    sdk.Export: "ExportOut",
    sdk.Evaluation: "Evaluation",
    sdk.Scored: "Scored",
    sdk.Prediction: "Prediction",
    sdk.PredictionResult: "PredictOut",
    sdk.PredictionList: "PredictManyOut",
    sdk.WordScore: "WordScore",
    sdk.Heatmap: "Heatmap",
    sdk.Explained: "Explained",
    sdk.ExplanationResult: "ExplainOut",
    sdk.ApiKey: "KeyOut",
    sdk.CreatedApiKey: "KeyCreated",
    sdk.ModelSelection: "SelectionOut",
    sdk.CandidateScore: "CandidateScore",
}
# SDK types with no component schema to compare with: the server sends a free-form dict there.
NOT_MIRRORED: dict[type[sdk.Resource], str] = {
    sdk.BaseModelInfo: "GET /v1/base_models answers with plain dicts (app/base_models)",
    sdk.JobProgress: "JobOut.progress is dict[str, Any]",
    sdk.JobError: "JobOut.error is dict[str, Any]",
    sdk.ClassScores: "Evaluation.per_class is dict[str, dict[str, float]]",
    sdk.ConfusionMatrix: "Evaluation.confusion_matrix is dict[str, Any]",
}

ANY = frozenset()  # a schema without a type accepts any JSON value


def json_types(prop: dict[str, Any]) -> frozenset[str]:
    """The JSON types a property schema allows: string, integer, number, boolean, array, object,
    null, and date-time for a string with that format; ANY when it does not say."""
    for key in ("anyOf", "oneOf", "allOf"):
        if key in prop:
            parts = [json_types(p) for p in prop[key]]
            return ANY if ANY in parts else frozenset().union(*parts)
    if "$ref" in prop:
        return frozenset({"object"})
    kind = prop.get("type")
    if kind is None:
        return ANY
    kinds = {kind} if isinstance(kind, str) else set(kind)
    if "string" in kinds and prop.get("format") == "date-time":
        kinds = (kinds - {"string"}) | {"date-time"}
    return frozenset(kinds)


def compatible(name: str, server: frozenset[str], client: frozenset[str]) -> bool:
    """Whether every value the server may send for `name` is one the SDK type accepts."""
    if client == ANY:
        return True
    if server == ANY:
        return False
    for kind in server:
        if kind in client or (kind == "integer" and "number" in client):
            continue
        if kind == "date-time" and "string" in client:
            continue
        # The server's Timestamp serializer drops format: date-time from the OpenAPI schema;
        # its timestamps are the `*_at` fields, which the SDK parses as datetime.
        if kind == "string" and "date-time" in client and name.endswith("_at"):
            continue
        return False
    return True


def mismatches(cls: type[sdk.Resource], schema: dict[str, Any]) -> list[str]:
    """What disagrees between an SDK type and a server schema (empty when they agree)."""
    props = schema.get("properties", {})
    client_props = cls.model_json_schema(mode="validation").get("properties", {})
    fields = cls.model_fields
    problems = [f"{cls.__name__}.{name}: required by the server, missing from the SDK"
                for name in schema.get("required", []) if name not in fields]
    problems += [f"{cls.__name__}.{name}: required by the SDK (no default), not sent by the server"
                 for name, field in fields.items() if field.is_required() and name not in props]
    for name in sorted(set(props) & set(fields)):
        server, client = json_types(props[name]), json_types(client_props[name])
        if not compatible(name, server, client):
            problems.append(f"{cls.__name__}.{name}: server sends {sorted(server) or 'any'}, "
                            f"the SDK accepts {sorted(client) or 'any'}")
    return problems


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    from app.main import create_app

    return create_app().openapi()["components"]["schemas"]


def test_every_sdk_type_is_mapped_or_explained():
    resources = {obj for obj in vars(sdk).values()
                 if isinstance(obj, type) and issubclass(obj, sdk.Resource)
                 and obj is not sdk.Resource}
    assert resources == set(MIRRORS) | set(NOT_MIRRORED)
    assert not set(MIRRORS) & set(NOT_MIRRORED)


def test_every_mirrored_schema_exists(schemas):
    assert {name for name in MIRRORS.values() if name not in schemas} == set()


@pytest.mark.parametrize("cls", list(MIRRORS), ids=lambda cls: cls.__name__)
def test_sdk_type_matches_the_server_schema(cls, schemas):
    assert mismatches(cls, schemas[MIRRORS[cls]]) == []


def test_a_new_required_server_field_is_caught(schemas):
    """The check itself: a field the server starts requiring, or sends as another type."""
    schema = {**schemas["DatasetOut"],
              "properties": {**schemas["DatasetOut"]["properties"], "owner": {"type": "string"}},
              "required": [*schemas["DatasetOut"]["required"], "owner"]}
    assert mismatches(sdk.Dataset, schema) == [
        "Dataset.owner: required by the server, missing from the SDK"]
    props = {**schemas["DatasetOut"]["properties"], "bytes": {"type": "string"}}
    assert mismatches(sdk.Dataset, {**schemas["DatasetOut"], "properties": props}) == [
        "Dataset.bytes: server sends ['string'], the SDK accepts ['integer']"]
    props = {k: v for k, v in schemas["DatasetOut"]["properties"].items() if k != "sha256"}
    required = [k for k in schemas["DatasetOut"]["required"] if k != "sha256"]
    assert mismatches(sdk.Dataset, {"properties": props, "required": required}) == [
        "Dataset.sha256: required by the SDK (no default), not sent by the server"]
