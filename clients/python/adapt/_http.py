"""The HTTP core every resource goes through: base URL, the key, JSON in and out, typed errors."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import httpx

from adapt import __version__
from adapt.errors import APIConnectionError, from_response

DEFAULT_URL = "http://127.0.0.1:8000"


class HTTP:
    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.base_url = (base_url or os.environ.get("ADAPT_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("ADAPT_API_KEY") or None
        headers = {"User-Agent": f"adapt-python/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                   transport=transport)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, *, idempotency_key: str | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """Send one request; a 4xx/5xx becomes the matching AdaptError."""
        headers = dict(headers or {})
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise connection_error(self.base_url, exc) from exc
        if response.is_error:
            raise from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, method: str, path: str, *, headers: dict[str, str] | None = None,
               timeout: httpx.Timeout | float | None = None,
               **kwargs: Any) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives; errors raised like `request`."""
        extra = {} if timeout is None else {"timeout": timeout}
        try:
            with self.client.stream(method, path, headers=headers, **extra, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise connection_error(self.base_url, exc) from exc


def connection_error(base_url: str, exc: Exception) -> APIConnectionError:
    return APIConnectionError(f"cannot reach {base_url}: {exc.__class__.__name__}: {exc}",
                              code="connection_error")
