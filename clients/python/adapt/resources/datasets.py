from __future__ import annotations

from adapt._http import HTTP
from adapt.pagination import Pager
from adapt.resources._upload import Uploadable, form, upload_file
from adapt.types import Dataset


class Datasets:
    def __init__(self, http: HTTP):
        self._http = http

    def upload(self, file: Uploadable, *, name: str | None = None, task: str | None = None,
               text_column: str | None = None, label_column: str | None = None,
               filename: str | None = None, idempotency_key: str | None = None) -> Dataset:
        """Upload a CSV, JSONL or image ZIP (a path or an open binary file; streamed, never
        read whole); it is validated before this returns (ValidationError names the lines)."""
        with upload_file(file, filename) as (fname, body):
            return Dataset.model_validate(self._http.json(
                "POST", "/v1/datasets", files={"file": (fname, body)},
                data=form(name=name, task=task, text_column=text_column,
                          label_column=label_column),
                idempotency_key=idempotency_key))

    def list(self, *, limit: int = 20, after: str | None = None) -> Pager[Dataset]:
        """Every dataset, newest first, `limit` a request."""
        return Pager(lambda p: self._http.json("GET", "/v1/datasets", params=p),
                     Dataset.model_validate, {"limit": limit, "after": after})

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(self._http.json("GET", f"/v1/datasets/{dataset_id}"))

    def delete(self, dataset_id: str) -> Dataset:
        """Delete it (Conflict while a queued or running job uses it)."""
        return Dataset.model_validate(self._http.json("DELETE", f"/v1/datasets/{dataset_id}"))
