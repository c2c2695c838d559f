from __future__ import annotations

import asyncio
import time
from pathlib import Path

from adapt._http import Call
from adapt.pagination import Pager
from adapt.resources.checkpoints import asave_zip, save_zip
from adapt.resources.jobs import TRANSIENT, _Waiting
from adapt.types import Export


def _download(export_id: str) -> str:
    return f"/v1/exports/{export_id}/download"


class Exports:
    """Models exported to ONNX: `create` queues one (a worker builds and measures it), `wait`
    polls until it has finished, `download` saves its archive."""

    def __init__(self, http):
        self._http = http

    def create(self, model_id: str, *, format: str = "onnx", quantize: str | None = None,
               idempotency_key: str | None = None) -> Export:
        """Queue an export of the model; quantize: None (fp32), "int8" or "fp16"."""
        return self._http.call(Call("POST", f"/v1/models/{model_id}/exports",
                                    json={"format": format, "quantize": quantize}, create=True,
                                    idempotency_key=idempotency_key,
                                    into=Export.model_validate))

    def list(self, model_id: str, *, limit: int = 20, after: str | None = None) -> Pager[Export]:
        """The model's exports, newest first."""
        return self._http.pager(f"/v1/models/{model_id}/exports", Export.model_validate,
                                {"limit": limit, "after": after})

    def get(self, export_id: str) -> Export:
        return self._http.call(Call("GET", f"/v1/exports/{export_id}",
                                    into=Export.model_validate))

    def delete(self, export_id: str) -> Export:
        """Delete the export and its archive."""
        return self._http.call(Call("DELETE", f"/v1/exports/{export_id}",
                                    into=Export.model_validate))

    def wait(self, export_id: str, *, timeout: float | None = None,
             poll_interval: float = 1.0) -> Export:
        """Poll until the export has succeeded or failed; TimeoutError after `timeout` s."""
        waiting = _Waiting(export_id, timeout, poll_interval, noun="export")
        while waiting.pause is not None:
            time.sleep(waiting.pause)
            try:
                waiting.saw(self.get(export_id))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job

    def download(self, export_id: str, path: str | Path) -> Path:
        """Write the export's ZIP (model.onnx, tokenizer or preprocessing, labels.json,
        README.md) to `path`, streamed; a directory gets `<export id>.zip` inside it."""
        return save_zip(self._http, _download(export_id), export_id, path)


class AsyncExports(Exports):
    async def wait(self, export_id: str, *, timeout: float | None = None,
                   poll_interval: float = 1.0) -> Export:
        waiting = _Waiting(export_id, timeout, poll_interval, noun="export")
        while waiting.pause is not None:
            await asyncio.sleep(waiting.pause)
            try:
                waiting.saw(await self.get(export_id))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job

    async def download(self, export_id: str, path: str | Path) -> Path:
        return await asave_zip(self._http, _download(export_id), export_id, path)
