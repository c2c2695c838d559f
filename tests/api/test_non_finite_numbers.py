"""NaN and ±Infinity (Python's JSON parser accepts them) are a 422 naming the field, never a 500;
-0.0 is 0.0 where 0 is allowed and refused where the range excludes 0."""
import pytest
from helpers import toy_csv

from app.ml.config import RANGES, resolve_hyperparameters

TEXT_FULL = ["epochs", "batch_size", "learning_rate", "max_length", "weight_decay",
             "warmup_ratio", "dropout", "eval_batch_size", "length_bucketing"]
NON_FINITE = ["NaN", "Infinity", "-Infinity"]


@pytest.fixture(scope="module")
def dataset_id(client):
    return client.post("/v1/datasets", files={"file": ("nf.csv", toy_csv(20))}).json()["id"]


def post_raw(client, text: str):
    return client.post("/v1/jobs", content=text, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("name", sorted(RANGES))
def test_every_hyperparameter_refuses_non_finite_numbers(client, dataset_id, name, literal):
    method = {"unfreeze_layers": "partial"}.get(name, "lora" if name.startswith("lora") else "full")
    res = post_raw(client, f'{{"base_model": "tiny-bert", "training_dataset": "{dataset_id}", '
                           f'"method": "{method}", "hyperparameters": {{"{name}": {literal}}}}}')
    assert res.status_code == 422, res.text
    assert res.json()["error"]["param"] == f"hyperparameters.{name}"


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("field", ["validation_split", "seed"])
def test_non_finite_numbers_elsewhere_in_a_body_are_422(client, dataset_id, field, literal):
    res = post_raw(client, f'{{"base_model": "tiny-bert", "training_dataset": "{dataset_id}", '
                           f'"{field}": {literal}}}')
    assert res.status_code == 422, res.text
    assert res.json()["error"]["param"] == field


@pytest.mark.parametrize("path,body", [
    ("/v1/models/x/predict", '{"inputs": ["a"], "top_k": NaN}'),
    ("/v1/webhooks", '{"url": "https://example.com/h", "events": ["job.succeeded"], '
                     '"description": Infinity}'),
    ("/v1/jobs", '{"base_model": "tiny-bert", "training_dataset": "x", '
                 '"early_stopping": {"patience": -Infinity}}'),
])
def test_non_finite_numbers_in_other_bodies_are_422(client, path, body):
    res = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert res.status_code == 422, res.text


@pytest.mark.parametrize("literal", NON_FINITE)
def test_the_resolver_itself_never_calls_int_on_a_non_finite_value(literal):
    with pytest.raises(ValueError) as info:
        resolve_hyperparameters("full", {"epochs": float(literal)})
    assert info.value.args[0] == "epochs"


def test_negative_zero_is_zero_where_zero_is_allowed_and_refused_elsewhere(client, dataset_id,
                                                                          monkeypatch):
    monkeypatch.setattr("app.queue.send_training", lambda *a, **k: None)
    ok = post_raw(client, f'{{"base_model": "tiny-bert", "training_dataset": "{dataset_id}", '
                          '"hyperparameters": {"dropout": -0.0, "weight_decay": -0.0}}')
    assert ok.status_code == 201, ok.text
    assert '"dropout":0.0' in ok.text.replace(" ", "") and '-0.0' not in ok.text
    for name in ("learning_rate", "epochs"):
        bad = post_raw(client, f'{{"base_model": "tiny-bert", "training_dataset": "{dataset_id}", '
                               f'"hyperparameters": {{"{name}": -0.0}}}}')
        assert bad.status_code == 422 and bad.json()["error"]["param"] == f"hyperparameters.{name}"
