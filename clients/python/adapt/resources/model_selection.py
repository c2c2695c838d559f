from __future__ import annotations

import asyncio
import time

from adapt._http import Call
from adapt.resources.jobs import TRANSIENT, _Waiting
from adapt.types import ModelSelection


class ModelSelections:
    """Rank base models for a dataset before training: `create` queues a ranking (a worker
    scores each candidate's frozen features with LogME and a k-NN probe), `wait` polls until it
    has finished; `results` are best first."""

    def __init__(self, http):
        self._http = http

    def create(self, dataset_id: str, candidates: list[str] | str = "all", *,
               max_examples: int | None = None,
               idempotency_key: str | None = None) -> ModelSelection:
        """Queue the ranking of `candidates` (base model ids, or "all" of the dataset's task)."""
        body = {"dataset": dataset_id, "candidates": candidates}
        if max_examples is not None:
            body["max_examples"] = max_examples
        return self._http.call(Call("POST", "/v1/model-selection", json=body, create=True,
                                    idempotency_key=idempotency_key,
                                    into=ModelSelection.model_validate))

    def get(self, selection_id: str) -> ModelSelection:
        return self._http.call(Call("GET", f"/v1/model-selection/{selection_id}",
                                    into=ModelSelection.model_validate))

    def wait(self, selection_id: str, *, timeout: float | None = None,
             poll_interval: float = 1.0) -> ModelSelection:
        """Poll until the ranking has succeeded or failed; TimeoutError after `timeout` s."""
        waiting = _Waiting(selection_id, timeout, poll_interval, noun="model selection")
        while waiting.pause is not None:
            time.sleep(waiting.pause)
            try:
                waiting.saw(self.get(selection_id))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job


class AsyncModelSelections(ModelSelections):
    async def wait(self, selection_id: str, *, timeout: float | None = None,
                   poll_interval: float = 1.0) -> ModelSelection:
        waiting = _Waiting(selection_id, timeout, poll_interval, noun="model selection")
        while waiting.pause is not None:
            await asyncio.sleep(waiting.pause)
            try:
                waiting.saw(await self.get(selection_id))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job
