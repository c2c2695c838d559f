"""Per request: an X-Request-ID (the caller's, or a new one) in context and echoed back, one
access log line, and the request metrics by route template."""
import itertools
import logging
import os
import re
import time

from app.observability import logs, metrics

log = logging.getLogger("adapt.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# New request ids: 32 hex digits, random per process, then a counter. Not uuid4: each of those
# reads the OS's random source, a system call per request that shows in the profile.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def _route(scope: dict) -> str:
    """The matched route's template (/v1/jobs/{job_id}): bounded label values, never raw paths."""
    route = scope.get("route")
    return getattr(route, "path", None) or "<unmatched>"


class RequestContextMiddleware:
    """Pure ASGI (no response buffering): streams and SSE pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"),
                     b"").decode("latin-1")
        rid = given if _VALID_ID.match(given) else new_request_id()
        token = logs.request_id.set(rid)
        start, status = time.perf_counter(), 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = _route(scope)
            metrics.observe_request(scope["method"], route, status, seconds)
            log.info("%s %s %s", scope["method"], route, status,
                     extra={"method": scope["method"], "route": route, "path": scope["path"],
                            "status": status, "duration_ms": round(seconds * 1000, 1)})
            logs.request_id.reset(token)
