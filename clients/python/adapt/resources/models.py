from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Sequence

from adapt._http import Call
from adapt.pagination import Pager
from adapt.resources._upload import data_of
from adapt.types import (Evaluation, ExplanationResult, Job, Model, PredictionList,
                         PredictionResult)


def _input(value: str | bytes | dict[str, Any]) -> str | dict[str, Any]:
    """Texts as they are; image bytes as {"image_base64": …}."""
    if isinstance(value, bytes):
        return {"image_base64": base64.b64encode(value).decode()}
    return value


class Models:
    def __init__(self, http, checkpoints, jobs=None):
        self._http, self._checkpoints, self._jobs = http, checkpoints, jobs

    def create(self, checkpoint: str, *, name: str | None = None,
               idempotency_key: str | None = None) -> Model:
        """A model from any checkpoint (a succeeded job makes one from its best by itself)."""
        body = {"checkpoint": checkpoint, **({"name": name} if name else {})}
        return self._http.call(Call("POST", "/v1/models", json=body, create=True,
                                    idempotency_key=idempotency_key, into=Model.model_validate))

    def list(self, *, limit: int = 20, after: str | None = None) -> Pager[Model]:
        return self._http.pager("/v1/models", Model.model_validate,
                                {"limit": limit, "after": after})

    def get(self, model_id: str) -> Model:
        return self._http.call(Call("GET", f"/v1/models/{model_id}", into=Model.model_validate))

    def delete(self, model_id: str) -> Model:
        return self._http.call(Call("DELETE", f"/v1/models/{model_id}",
                                    into=Model.model_validate))

    def prune(self, model_id: str, *, ffn: float | None = None, heads: float | None = None,
              channels: float | None = None, retrain_epochs: int | None = None, hyperparameters: dict[str, Any] | None = None,
              suffix: str | None = None, idempotency_key: str | None = None) -> Job:
        """Start a job that removes `ffn` of every encoder layer's FFN channels and `heads` of its
        attention heads (each 0 <= x < 1, at least one above 0) — or, for an image model,
        `channels` of every convolution's channels — and retrains briefly on the model's own
        training data; its model's `compression` shows params, size, latency and accuracy beside
        this one's."""
        target = {k: v for k, v in {"ffn": ffn, "heads": heads, "channels": channels}.items()
                  if v is not None}
        body = {k: v for k, v in {"target": target, "retrain_epochs": retrain_epochs,
                                  "hyperparameters": hyperparameters,
                                  "suffix": suffix}.items() if v is not None}
        into = self._jobs._job if self._jobs is not None else Job.model_validate
        return self._http.call(Call("POST", f"/v1/models/{model_id}/prune", json=body,
                                    create=True, idempotency_key=idempotency_key, into=into))

    def descendants(self, model_id: str) -> list[Model]:
        """The models distilled or pruned from this one, newest first."""
        return self._http.call(Call("GET", f"/v1/models/{model_id}/descendants",
                                    into=data_of(Model.model_validate)))

    def evaluation(self, model_id: str) -> Evaluation:
        """Accuracy, macro-F1, per class and the confusion matrix on the validation data."""
        return self._http.call(Call("GET", f"/v1/models/{model_id}/evaluation",
                                    into=Evaluation.model_validate))

    def predict(self, model_id: str, inputs: Sequence[str | bytes | dict[str, Any]], *,
                top_k: int | None = None,
                min_confidence: float | None = None) -> PredictionResult:
        """Labels and calibrated scores for texts (str) or images (bytes of a file), at most
        256. Below `min_confidence` (or, without it, the thresholds the model learned) a
        prediction is `unsure` and its label None."""
        body: dict[str, Any] = {"inputs": [_input(v) for v in inputs]}
        if top_k is not None:
            body["top_k"] = top_k
        if min_confidence is not None:
            body["min_confidence"] = min_confidence
        return self._http.call(Call("POST", f"/v1/models/{model_id}/predict", json=body,
                                    safe=True, into=PredictionResult.model_validate))

    def predict_many(self, model_ids: Sequence[str],
                     inputs: Sequence[str | bytes | dict[str, Any]], *,
                     top_k: int | None = None,
                     min_confidence: float | None = None) -> PredictionList:
        """The same texts (or images: bytes of a file) asked of several models of one task on
        one base model (at most 32, each once) in one request and one backbone pass; one
        PredictionResult per model, in order."""
        body: dict[str, Any] = {"models": list(model_ids), "inputs": [_input(v) for v in inputs]}
        if top_k is not None:
            body["top_k"] = top_k
        if min_confidence is not None:
            body["min_confidence"] = min_confidence
        return self._http.call(Call("POST", "/v1/predict", json=body, safe=True,
                                    into=PredictionList.model_validate))

    def explain(self, model_id: str, inputs: Sequence[str | bytes | dict[str, Any]], *,
                target: str | None = None, steps: int | None = None,
                top_k: int | None = None) -> ExplanationResult:
        """Each input's prediction and why: a score per word for texts (with character
        offsets), a heatmap for images. `target`: the label to explain (default: each input's
        predicted label); `steps`: integrated-gradients steps (the server caps both
        steps and the number of inputs)."""
        body: dict[str, Any] = {"inputs": [_input(v) for v in inputs]}
        for name, value in (("target", target), ("steps", steps), ("top_k", top_k)):
            if value is not None:
                body[name] = value
        return self._http.call(Call("POST", f"/v1/models/{model_id}/explain", json=body,
                                    safe=True, into=ExplanationResult.model_validate))

    def download(self, model_id: str, path: str | Path) -> Path:
        """The model's checkpoint as a ZIP (see `Checkpoints.download`)."""
        return self._checkpoints.download(self.get(model_id).checkpoint, path)


class AsyncModels(Models):
    async def download(self, model_id: str, path: str | Path) -> Path:
        return await self._checkpoints.download((await self.get(model_id)).checkpoint, path)
