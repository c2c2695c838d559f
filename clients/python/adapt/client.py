"""`Client` and `AsyncClient`: one object per service, with a resource per domain
(`client.jobs.create(...)`). Both describe each request the same way (adapt._http.Call); the
async one sends it with httpx.AsyncClient, so its methods are awaited and its lists and
streams are async iterators."""
from __future__ import annotations

from typing import Any

import httpx

from adapt._http import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, HTTP, AsyncHTTP, Call, Timeout
from adapt.resources.base_models import BaseModels
from adapt.resources.checkpoints import AsyncCheckpoints, Checkpoints
from adapt.resources.datasets import AsyncDatasets, Datasets
from adapt.resources.exports import AsyncExports, Exports
from adapt.resources.jobs import AsyncJobs, Jobs
from adapt.resources.keys import Keys
from adapt.resources.model_selection import AsyncModelSelections, ModelSelections
from adapt.resources.models import AsyncModels, Models

_NOT_GIVEN: Any = ...


class _Client:
    _http_class: type = HTTP
    _jobs, _checkpoints, _models, _exports = Jobs, Checkpoints, Models, Exports
    _datasets = Datasets
    _selections = ModelSelections

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: Timeout = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_MAX_RETRIES,
                 transport: Any = None):
        self._bind(self._http_class(base_url, api_key, timeout, max_retries, transport))

    def _bind(self, http) -> None:
        self._http = http
        self.datasets = self._datasets(http)
        self.base_models = BaseModels(http)
        self.jobs = self._jobs(http, self)
        self.checkpoints = self._checkpoints(http)
        self.models = self._models(http, self.checkpoints, self.jobs)
        self.keys = Keys(http)
        self.exports = self._exports(http)
        self.model_selection = self._selections(http)

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def timeout(self) -> Timeout:
        return self._http.timeout

    @property
    def max_retries(self) -> int:
        return self._http.max_retries

    def with_options(self, *, timeout: Timeout = _NOT_GIVEN, max_retries: int | None = None):
        """A copy with another timeout (seconds, or an httpx.Timeout) or number of retries,
        sharing this client's connections: `client.with_options(timeout=5).jobs.get(...)`."""
        other = object.__new__(type(self))
        other._bind(self._http.copy(timeout=timeout, max_retries=max_retries))
        return other

    def health(self):
        """Whether the service answers /healthz."""
        return self._http.call(Call("GET", "/healthz",
                                    into=lambda body: body.get("status") == "ok"))


class Client(_Client):
    """A synchronous client of the adapt API.

    `base_url` defaults to $ADAPT_URL, then http://127.0.0.1:8000; `api_key` to $ADAPT_API_KEY
    (the embedded single-user service on 127.0.0.1 needs none). `timeout` is in seconds (or an
    httpx.Timeout); a request that fails transiently (connection error, timeout, 408, 429,
    5xx) is sent again up to `max_retries` times, with exponential backoff and jitter, waiting
    as long as the server's Retry-After asks.
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: Timeout = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_MAX_RETRIES,
                 transport: httpx.BaseTransport | None = None):
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries,
                         transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Client):
    """The same client for asyncio: `await client.jobs.get(...)`, `async for job in
    client.jobs.list()`, `async for event in client.jobs.stream(job_id)`."""

    _http_class = AsyncHTTP
    _jobs, _checkpoints, _models, _exports = AsyncJobs, AsyncCheckpoints, AsyncModels, AsyncExports
    _datasets = AsyncDatasets
    _selections = AsyncModelSelections

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: Timeout = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_MAX_RETRIES,
                 transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries,
                         transport=transport)

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
