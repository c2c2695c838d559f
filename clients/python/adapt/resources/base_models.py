from __future__ import annotations

import json
from typing import Any

from adapt._http import HTTP
from adapt.resources._upload import Uploadable, form, upload_file
from adapt.types import BaseModelInfo


class BaseModels:
    def __init__(self, http: HTTP):
        self._http = http

    def list(self) -> list[BaseModelInfo]:
        """The catalog: bundled, local and uploaded base models."""
        body = self._http.json("GET", "/v1/base-models")
        return [BaseModelInfo.model_validate(item) for item in body["data"]]

    def upload(self, file: Uploadable, *, architecture: str, name: str | None = None,
               task: str | None = None, config: dict[str, Any] | str | None = None,
               tokenizer: str | None = None, filename: str | None = None,
               idempotency_key: str | None = None) -> BaseModelInfo:
        """Bring your own weights (safetensors): a torchvision architecture, or a transformers
        model type with its `config`; returns a `bm_…` base model usable in jobs."""
        if isinstance(config, dict):
            config = json.dumps(config)
        with upload_file(file, filename) as (fname, body):
            return BaseModelInfo.model_validate(self._http.json(
                "POST", "/v1/base-models", files={"file": (fname, body)},
                data=form(architecture=architecture, name=name, task=task, config=config,
                          tokenizer=tokenizer),
                idempotency_key=idempotency_key))
