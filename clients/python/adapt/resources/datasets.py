from __future__ import annotations

from adapt._http import Call
from adapt.pagination import Pager
from adapt.resources._upload import Uploadable, form
from adapt.types import Dataset


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
