"""Request body limits, enforced while the body streams in: a 413 the moment a limit is crossed,
before the rest is read (an upload over the limit never lands on disk whole)."""
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import get_settings
from app.errors import error_body

MULTIPART_OVERHEAD = 1 << 16  # form fields and part headers around the file, bytes


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body parsing re-raises it instead of making it a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than the limit of {limit} bytes.")


def body_limit(scope: Scope) -> int:
    settings = get_settings()
    ctype = dict(scope.get("headers") or []).get(b"content-type", b"")
    if ctype.startswith(b"multipart/form-data"):
        return settings.max_upload_bytes + MULTIPART_OVERHEAD
    return settings.max_json_bytes


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = body_limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._refuse(send, limit)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = json.dumps(error_body("too_large", f"The request body is larger than the limit "
                                                  f"of {limit} bytes.")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
