from __future__ import annotations

import asyncio
import time

from adapt._http import Call
from adapt.pagination import Pager
from adapt.resources._upload import Uploadable, form
from adapt.resources.jobs import TRANSIENT, _Waiting
from adapt.types import Dataset, QualityReport


class Datasets:
    def __init__(self, http):
        self._http = http

    def upload(self, file: Uploadable, *, name: str | None = None, task: str | None = None,
               text_column: str | None = None, label_column: str | None = None,
               filename: str | None = None, idempotency_key: str | None = None) -> Dataset:
        """Upload a CSV, JSONL or image ZIP (a path or an open binary file; streamed, never
        read whole); it is validated before this returns (ValidationError names the lines).
        From a path it is retried after a transient failure; from an open file it is sent once."""
        return self._http.call(Call(
            "POST", "/v1/datasets", upload=(file, filename),
            data=form(name=name, task=task, text_column=text_column, label_column=label_column),
            idempotency_key=idempotency_key, create=True, into=Dataset.model_validate))

    def list(self, *, limit: int = 20, after: str | None = None) -> Pager[Dataset]:
        """Every dataset, newest first, `limit` a request."""
        return self._http.pager("/v1/datasets", Dataset.model_validate,
                                {"limit": limit, "after": after})

    def get(self, dataset_id: str) -> Dataset:
        return self._http.call(Call("GET", f"/v1/datasets/{dataset_id}",
                                    into=Dataset.model_validate))

    def delete(self, dataset_id: str) -> Dataset:
        """Delete it (Conflict while a queued or running job uses it)."""
        return self._http.call(Call("DELETE", f"/v1/datasets/{dataset_id}",
                                    into=Dataset.model_validate))

    def check_quality(self, dataset_id: str, *, against: str | None = None,
                      idempotency_key: str | None = None) -> QualityReport:
        """Queue a data-quality report (a worker computes it): on the dataset alone, or with
        `against`, on its duplicates across another dataset (e.g. its validation data). One
        already queued or running is returned instead of a second."""
        return self._http.call(Call("POST", f"/v1/datasets/{dataset_id}/quality",
                                    json={"against": against}, create=True,
                                    idempotency_key=idempotency_key,
                                    into=QualityReport.model_validate))

    def quality(self, dataset_id: str, *, against: str | None = None) -> QualityReport:
        """The newest quality report, with the rows it names (NotFound when none was asked
        for)."""
        return self._http.call(Call("GET", f"/v1/datasets/{dataset_id}/quality",
                                    params={"against": against} if against else None,
                                    into=QualityReport.model_validate))

    def wait_quality(self, dataset_id: str, *, against: str | None = None,
                     timeout: float | None = None, poll_interval: float = 1.0) -> QualityReport:
        """Poll until the newest quality report has succeeded or failed."""
        waiting = _Waiting(dataset_id, timeout, poll_interval, noun="quality report of")
        while waiting.pause is not None:
            time.sleep(waiting.pause)
            try:
                waiting.saw(self.quality(dataset_id, against=against))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job


class AsyncDatasets(Datasets):
    async def wait_quality(self, dataset_id: str, *, against: str | None = None,
                           timeout: float | None = None,
                           poll_interval: float = 1.0) -> QualityReport:
        waiting = _Waiting(dataset_id, timeout, poll_interval, noun="quality report of")
        while waiting.pause is not None:
            await asyncio.sleep(waiting.pause)
            try:
                waiting.saw(await self.quality(dataset_id, against=against))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job
