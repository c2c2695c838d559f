"""Typed exceptions for the API's one error body:
`{"error": {"code", "message", "param", "details"}}`, plus the HTTP status."""
from __future__ import annotations

import email.utils
from datetime import datetime, timezone
from typing import Any

import httpx


class AdaptError(Exception):
    """Base of every error the SDK raises."""

    def __init__(self, message: str, *, code: str = "error", param: str | None = None,
                 details: list[dict[str, Any]] | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.details = details or []
        self.status = status
        self.headers = headers or {}

    def __str__(self) -> str:
        where = f" (param: {self.param})" if self.param else ""
        return f"{self.code}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The error as the API's body shape, plus the HTTP status."""
        return {"error": {"code": self.code, "message": self.message, "param": self.param,
                          "details": self.details, "status": self.status}}


class APIConnectionError(AdaptError):
    """The service could not be reached (refused, reset, timed out)."""


class APITimeoutError(APIConnectionError):
    """The service did not answer in time (connect, read or write timeout); code `timeout`."""


class BadRequest(AdaptError):
    """400."""


class Unauthorized(AdaptError):
    """401: no API key, or a bad or revoked one."""


class PermissionDenied(AdaptError):
    """403: the route needs an admin key."""


class NotFound(AdaptError):
    """404: an unknown id, or another tenant's object."""


class Conflict(AdaptError):
    """409: the object's state forbids it (cancelling a finished job, a reused Idempotency-Key)."""


class TooLarge(AdaptError):
    """413."""


class UnsupportedMediaType(AdaptError):
    """415."""


class ValidationError(AdaptError):
    """422: bad input; `param` names the field, `details` the lines or members that are wrong."""


class RateLimited(AdaptError):
    """429: `retry_after` is the number of seconds the service asked to wait."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds from now: a number of seconds, or an HTTP date."""
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


class ServerError(AdaptError):
    """5xx."""


class ServiceUnavailable(ServerError):
    """503: a dependency (database, broker, storage) is down; retry later."""


_BY_STATUS: dict[int, type[AdaptError]] = {
    400: BadRequest, 401: Unauthorized, 403: PermissionDenied, 404: NotFound, 409: Conflict,
    413: TooLarge, 415: UnsupportedMediaType, 422: ValidationError, 429: RateLimited,
    503: ServiceUnavailable,
}


def from_response(response: httpx.Response) -> AdaptError:
    """The typed error for a response with a 4xx/5xx status (its body read)."""
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else AdaptError)
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
        param, details = body.get("param"), body.get("details") or []
    except (ValueError, KeyError, TypeError):  # not the API's body (a proxy, a crash page)
        code, message = f"http_{status}", response.text.strip()[:500] or response.reason_phrase
        param, details = None, []
    return cls(message, code=code, param=param, details=details, status=status,
               headers={k.lower(): v for k, v in response.headers.items()})
