"""`Client`: one object per service, with a resource per domain (`client.jobs.create(...)`)."""
from __future__ import annotations

import httpx

from adapt._http import HTTP
from adapt.resources.base_models import BaseModels
from adapt.resources.checkpoints import Checkpoints
from adapt.resources.datasets import Datasets
from adapt.resources.jobs import Jobs
from adapt.resources.keys import Keys
from adapt.resources.models import Models


class Client:
    """A synchronous client of the adapt API.

    `base_url` defaults to $ADAPT_URL, then http://127.0.0.1:8000; `api_key` to $ADAPT_API_KEY
    (the embedded single-user service on 127.0.0.1 needs none).
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self._http = HTTP(base_url, api_key, timeout, transport)
        self.datasets = Datasets(self._http)
        self.base_models = BaseModels(self._http)
        self.jobs = Jobs(self._http, self)
        self.checkpoints = Checkpoints(self._http)
        self.models = Models(self._http, self.checkpoints)
        self.keys = Keys(self._http)

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def health(self) -> bool:
        """Whether the service answers /healthz."""
        return self._http.json("GET", "/healthz").get("status") == "ok"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
