from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Sequence

from adapt._http import Call
from adapt.pagination import Pager
from adapt.types import Evaluation, Model, PredictionResult


def _input(value: str | bytes | dict[str, Any]) -> str | dict[str, Any]:
    """Texts as they are; image bytes as {"image_base64": …}."""
    if isinstance(value, bytes):
        return {"image_base64": base64.b64encode(value).decode()}
    return value


class Models:
    def __init__(self, http, checkpoints):
        self._http, self._checkpoints = http, checkpoints

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

    def evaluation(self, model_id: str) -> Evaluation:
        """Accuracy, macro-F1, per class and the confusion matrix on the validation data."""
        return self._http.call(Call("GET", f"/v1/models/{model_id}/evaluation",
                                    into=Evaluation.model_validate))

    def predict(self, model_id: str, inputs: Sequence[str | bytes | dict[str, Any]], *,
                top_k: int | None = None) -> PredictionResult:
        """Labels and scores for texts (str) or images (bytes of a file), at most 256."""
        body: dict[str, Any] = {"inputs": [_input(v) for v in inputs]}
        if top_k is not None:
            body["top_k"] = top_k
        return self._http.call(Call("POST", f"/v1/models/{model_id}/predict", json=body,
                                    safe=True, into=PredictionResult.model_validate))

    def download(self, model_id: str, path: str | Path) -> Path:
        """The model's checkpoint as a ZIP (see `Checkpoints.download`)."""
        return self._checkpoints.download(self.get(model_id).checkpoint, path)


class AsyncModels(Models):
    async def download(self, model_id: str, path: str | Path) -> Path:
        return await self._checkpoints.download((await self.get(model_id)).checkpoint, path)
