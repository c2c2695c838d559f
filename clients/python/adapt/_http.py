"""The HTTP core every resource goes through: base URL, the key, JSON in and out, typed errors,
retries. A request is described once as a `Call`; `HTTP` (httpx.Client) and `AsyncHTTP`
(httpx.AsyncClient) send it the same way, differing only in how they wait."""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Union

import httpx

from adapt import __version__
from adapt.errors import (APIConnectionError, APITimeoutError, from_response,
                          parse_retry_after)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
# Backoff: 0.5 s, 1 s, 2 s … (at most 8 s), less up to a quarter at random (jitter).
INITIAL_DELAY, MAX_DELAY = 0.5, 8.0
# A Retry-After longer than this is not waited out: the error is raised (it carries the value).
MAX_RETRY_AFTER = 30.0
# Worth trying again: a timeout, rate limiting, the server or a proxy failing. 409 is not: the
# API's conflicts (job_finished, dataset in use, idempotency_key_reused) are not transient.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Refused before any work was done: safe to send again even when a repeat could double an effect.
REFUSED_STATUSES = frozenset({429, 503})

Uploadable = Union[str, Path, Any, bytes]  # a path, an open binary file, or the bytes
Timeout = Union[float, httpx.Timeout, None]
log = logging.getLogger("adapt")


@dataclass
class Call:
    """One API request and how to read its answer."""
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    upload: tuple[Uploadable, str | None] | None = None  # the multipart `file` and its name
    idempotency_key: str | None = None
    create: bool = False  # a creating POST: sent with an Idempotency-Key (one made when none given)
    safe: bool = False    # a POST without side effects (predict): as safe to repeat as a GET
    into: Callable[[Any], Any] | None = None  # applied to the JSON body
    text: bool = False    # the body as text instead of JSON

    def read(self, response: httpx.Response) -> Any:
        if self.text:
            return response.text
        body = response.json()
        return self.into(body) if self.into else body


def _upload_parts(upload: tuple[Uploadable, str | None], stack: ExitStack) -> dict[str, Any]:
    """The multipart `file` field; a path is opened here (again on each attempt), and streamed."""
    file, filename = upload
    if isinstance(file, (str, Path)):
        path = Path(file)
        return {"file": (filename or path.name, stack.enter_context(path.open("rb")))}
    if isinstance(file, bytes):
        return {"file": (filename or "upload", file)}
    return {"file": (filename or Path(getattr(file, "name", "upload")).name, file)}


def retry_after(response: httpx.Response | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    return parse_retry_after(response.headers.get("retry-after") if response is not None
                             else None)


def connection_error(base_url: str, exc: Exception) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"{base_url} did not answer in time: "
                               f"{exc.__class__.__name__}: {exc}", code="timeout")
    return APIConnectionError(f"cannot reach {base_url}: {exc.__class__.__name__}: {exc}",
                              code="connection_error")


class _Base:
    """What the sync and async cores share: configuration, request building, retry decisions."""

    client: Any

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: Timeout = DEFAULT_TIMEOUT, max_retries: int = DEFAULT_MAX_RETRIES,
                 transport: Any = None):
        self.base_url = (base_url or os.environ.get("ADAPT_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("ADAPT_API_KEY") or None
        self.timeout, self.max_retries, self.owner = timeout, max_retries, True
        self.client = self._make_client(transport)

    def _make_client(self, transport: Any) -> Any:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"adapt-python/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def copy(self, *, timeout: Timeout | object = ..., max_retries: int | None = None):
        """The same connection pool with other defaults (closing the copy leaves it open)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__, owner=False)
        if timeout is not ...:
            other.timeout = timeout
        if max_retries is not None:
            other.max_retries = max_retries
        return other

    def _key(self, call: Call) -> str | None:
        """The Idempotency-Key of a logical call: the caller's, or one made once for all of its
        attempts (the server replays the first response to a repeat)."""
        return call.idempotency_key or (f"adapt-{uuid.uuid4()}" if call.create else None)

    def _kwargs(self, call: Call, key: str | None, stack: ExitStack) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        kwargs: dict[str, Any] = {"method": call.method, "url": call.path, "headers": headers,
                                  "params": call.params, "timeout": self.timeout}
        if call.json is not None:
            kwargs["json"] = call.json
        if call.data is not None:
            kwargs["data"] = call.data
        if call.upload is not None:
            kwargs["files"] = _upload_parts(call.upload, stack)
        return kwargs

    @staticmethod
    def _repeatable(call: Call, key: str | None) -> bool:
        """Whether sending it twice has the effect of once."""
        if call.upload is not None and not isinstance(call.upload[0], (str, Path, bytes)):
            return False  # an open file cannot be read from the start again
        return call.method in ("GET", "HEAD", "PUT", "DELETE") or call.safe or bool(key)

    def _outcome(self, call: Call, key: str | None, attempt: int,
                 response: httpx.Response | None, exc: Exception | None) -> float | None:
        """None when `response` is the answer; else the seconds to wait before the next attempt;
        raises the typed error when there is to be none."""
        if exc is None and not response.is_error:
            return None
        error = connection_error(self.base_url, exc) if exc is not None else \
            from_response(response)
        delay = self._retry_delay(call, key, attempt, response)
        if delay is None:
            raise error from exc
        log.info("%s %s: %s; attempt %d of %d in %.2fs", call.method, call.path, error,
                 attempt + 2, self.max_retries + 1, delay)
        return delay

    def _retry_delay(self, call: Call, key: str | None, attempt: int,
                     response: httpx.Response | None) -> float | None:
        if attempt >= self.max_retries:
            return None
        if call.upload is not None and not isinstance(call.upload[0], (str, Path, bytes)):
            return None
        status = None if response is None else response.status_code
        if status is not None and status not in RETRY_STATUSES:
            return None
        if status not in REFUSED_STATUSES and not self._repeatable(call, key):
            return None
        asked = retry_after(response)
        if asked is not None:
            return asked if asked <= MAX_RETRY_AFTER else None
        return min(INITIAL_DELAY * 2 ** attempt, MAX_DELAY) * (1 - 0.25 * random.random())

    def _stream_kwargs(self, headers: dict[str, str] | None, timeout: Timeout | None,
                       kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"headers": headers, "timeout": self.timeout if timeout is None else timeout,
                **kwargs}


class HTTP(_Base):
    def _make_client(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self._headers(),
                            timeout=self.timeout, transport=transport)

    def close(self) -> None:
        if self.owner:
            self.client.close()

    def send(self, call: Call) -> httpx.Response:
        """Send it, again after a transient failure (at most max_retries times more)."""
        key = self._key(call)
        for attempt in count():
            response = exc = None
            with ExitStack() as stack:
                try:
                    response = self.client.request(**self._kwargs(call, key, stack))
                except httpx.TransportError as error:
                    exc = error
            delay = self._outcome(call, key, attempt, response, exc)
            if delay is None:
                return response
            time.sleep(delay)

    def call(self, call: Call) -> Any:
        return call.read(self.send(call))

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(Call(method, path, **kwargs))

    @contextmanager
    def stream(self, method: str, path: str, *, headers: dict[str, str] | None = None,
               timeout: Timeout | None = None, **kwargs: Any) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives; errors raised like `send`."""
        try:
            with self.client.stream(method, path,
                                    **self._stream_kwargs(headers, timeout, kwargs)) as response:
                if response.is_error:
                    response.read()
                    raise from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise connection_error(self.base_url, exc) from exc

    def pager(self, path: str, parse: Callable[[dict], Any], params: dict[str, Any]):
        from adapt.pagination import Pager
        return Pager(lambda p: self.json("GET", path, params=p), parse, params)


class AsyncHTTP(_Base):
    def _make_client(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=self._headers(),
                                 timeout=self.timeout, transport=transport)

    async def close(self) -> None:
        if self.owner:
            await self.client.aclose()

    async def send(self, call: Call) -> httpx.Response:
        key = self._key(call)
        for attempt in count():
            response = exc = None
            with ExitStack() as stack:
                try:
                    response = await self.client.request(**self._kwargs(call, key, stack))
                except httpx.TransportError as error:
                    exc = error
            delay = self._outcome(call, key, attempt, response, exc)
            if delay is None:
                return response
            await asyncio.sleep(delay)

    async def call(self, call: Call) -> Any:
        return call.read(await self.send(call))

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.call(Call(method, path, **kwargs))

    @asynccontextmanager
    async def stream(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                     timeout: Timeout | None = None,
                     **kwargs: Any) -> AsyncIterator[httpx.Response]:
        try:
            async with self.client.stream(
                    method, path, **self._stream_kwargs(headers, timeout, kwargs)) as response:
                if response.is_error:
                    await response.aread()
                    raise from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise connection_error(self.base_url, exc) from exc

    def pager(self, path: str, parse: Callable[[dict], Any], params: dict[str, Any]):
        from adapt.pagination import AsyncPager
        return AsyncPager(lambda p: self.json("GET", path, params=p), parse, params)
