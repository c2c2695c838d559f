from __future__ import annotations

import json
from typing import Any

from adapt._http import Call
from adapt.resources._upload import Uploadable, data_of, form
from adapt.types import BaseModelInfo


class BaseModels:
    def __init__(self, http):
        self._http = http

    def list(self) -> list[BaseModelInfo]:
        """The catalog: bundled, local and uploaded base models."""
        return self._http.call(Call("GET", "/v1/base-models",
                                    into=data_of(BaseModelInfo.model_validate)))

    def upload(self, file: Uploadable, *, architecture: str, name: str | None = None,
               task: str | None = None, config: dict[str, Any] | str | None = None,
               tokenizer: str | None = None, filename: str | None = None,
               idempotency_key: str | None = None) -> BaseModelInfo:
        """Bring your own weights (safetensors): a torchvision architecture, or a transformers
        model type with its `config`; returns a `bm_…` base model usable in jobs."""
        if isinstance(config, dict):
            config = json.dumps(config)
        return self._http.call(Call(
            "POST", "/v1/base-models", upload=(file, filename),
            data=form(architecture=architecture, name=name, task=task, config=config,
                      tokenizer=tokenizer),
            idempotency_key=idempotency_key, create=True, into=BaseModelInfo.model_validate))
