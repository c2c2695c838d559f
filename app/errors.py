"""One exception family with a code and an HTTP status, and the handlers that render the API body."""
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 details: list[dict] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.param = param
        self.details = details or []
        self.headers = headers


class InvalidInput(AppError):
    status, code = 422, "invalid_request"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class TooLarge(AppError):
    status, code = 413, "too_large"


class UnsupportedType(AppError):
    status, code = 415, "unsupported_media_type"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class Forbidden(AppError):
    status, code = 403, "forbidden"


class RateLimited(AppError):
    status, code = 429, "rate_limited"


class Unavailable(AppError):
    """A dependency is down or overloaded: retry after the Retry-After header's seconds."""
    status, code = 503, "unavailable"


def error_body(code: str, message: str, param: str | None = None,
               details: list | None = None) -> dict:
    return {"error": {"code": code, "message": message, "param": param, "details": details or []}}


def _app_error(_: Request, exc: AppError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.param, exc.details),
                        status_code=exc.status, headers=exc.headers)


def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        details.append({"param": ".".join(loc) or None, "message": err.get("msg", "invalid")})
    first = details[0] if details else {"param": None, "message": "invalid request"}
    message = f"{first['param']}: {first['message']}" if first["param"] else first["message"]
    return JSONResponse(error_body("invalid_request", message, first["param"], details),
                        status_code=422)


def _allowed_methods(request: Request) -> str:
    """Every method any route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
        for method in ("POST", "DELETE", "PUT", "PATCH"):
            match, _ = route.matches({**request.scope, "method": method})
            if match == Match.FULL and getattr(route, "methods", None):
                methods |= set(route.methods)
    return ", ".join(sorted(methods))


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
             415: "unsupported_media_type", 400: "bad_request"}
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(error_body(codes.get(exc.status_code, "http_error"), str(exc.detail)),
                        status_code=exc.status_code, headers=headers or None)


def _database_down(_: Request, exc: DBAPIError) -> JSONResponse:
    # A connection that dropped (PostgreSQL restarting) is a dependency outage, not a bug.
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.warning("database unavailable: %s", exc.orig)
        return JSONResponse(error_body("database_unavailable", "The database is unavailable; "
                                       "retry shortly."), status_code=503,
                            headers={"Retry-After": "5"})
    if isinstance(exc, DataError):  # a value the database refuses (PostgreSQL: a NUL byte)
        log.info("value refused by the database: %s", exc.orig)
        return JSONResponse(error_body("invalid_input", "A value in the request can't be stored "
                                       "or searched for (NUL bytes, for instance)."),
                            status_code=422)
    raise exc


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the API's one error shape."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_down)
