"""POST /v1/models/{id}/predict of JSON texts, answered before FastAPI's routing and dependency
solving when a model server runs the forward passes (ADAPT_MODEL_SERVER, as `adapt-serve` sets
it). Per request the regular route cost the API process ~5 ms of CPU (routing, dependencies, an
ORM session in the thread pool, its commit) on the same cores as the model server's forward
passes (benchmarks/README.md, "Serving side by side"); here it is one Core SELECT of the model and
its checkpoint, on the event loop while the database answers fast (app.fast_reads.Inline).

The answer is the regular route's: the same checks, the same body
(app.models_api.endpoints.predictions_response), the same metrics and the same rate limit.
Anything this path does not take — an image model, `explain`, a body that does not parse, a
missing key or model, bad inputs — goes on to the regular route with the body replayed, which answers it in the service's error shape (nothing
has been spent: the rate-limit token is taken only once the request is known to be good). From
the rate limit on, this path answers errors itself (429, and the model server's 503/422)."""
import re
import time

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import get_settings
from app.errors import AppError, error_body
from app.fast_reads import Inline
from app.keys.auth import current_caller
from app.models_api import model_server, service
from app.models_api.endpoints import predictions_response
from app.models_api.schemas import PredictIn
from app.observability import observe_predict, record_model_cache
from app.ratelimit import limiter

_PATH = re.compile(r"^/v1/models/([A-Za-z0-9_]{1,64})/predict$")
MAX_BODY = 1 << 20  # larger bodies go the regular way: this path is for the many small ones


class FastPredict:
    def __init__(self, app: ASGIApp, routes: list) -> None:
        self.app = app
        self.route = next(r for r in routes if getattr(r, "name", None) == "predict")
        self.inline = Inline()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"] \
                or not (m := _PATH.match(scope["path"])) or not get_settings().model_server:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if not headers.get(b"content-type", b"").startswith(b"application/json") \
                or not length.isdigit() or int(length) > MAX_BODY:
            return await self.app(scope, receive, send)
        body = await _body(receive)
        try:
            request = await self._checked(scope, m.group(1), body)
        except Exception:  # noqa: BLE001 - the regular route answers it (the body replayed)
            request = None
        if request is None:
            return await self.app(scope, _replay(body, receive), send)
        scope["route"] = self.route  # the access log's and metrics' label
        try:
            response = await _answer(*request)
        except AppError as exc:
            response = JSONResponse(error_body(exc.code, exc.message, exc.param, exc.details),
                                    status_code=exc.status, headers=exc.headers)
        await response(scope, receive, send)

    async def _checked(self, scope: Scope, model_id: str, body: bytes) -> tuple | None:
        """(settings, ref, inputs, options, caller) of a request this path answers, else None.
        Raises what the regular route would refuse."""
        started = time.perf_counter()
        try:
            parsed = PredictIn.model_validate_json(body)
        except ValidationError:
            return None
        if parsed.explain:
            return None
        settings = get_settings()
        caller = await current_caller(Request(scope))
        ref, inputs = await self.inline.run(service.read_remote_predict, settings, caller.tenant,
                                            model_id, list(parsed.inputs))
        return settings, caller, ref, inputs, parsed, started


async def _answer(settings, caller, ref: dict, inputs: list, parsed: PredictIn,
                  started: float) -> JSONResponse:
    if settings.rate_limits_enabled:
        limiter.take(caller.key_id or caller.tenant, "predict",
                     settings.rate_limit_predict_per_minute)
    [answer] = await model_server.predict(settings, [ref], inputs, parsed.top_k)
    record_model_cache(answer["hit"])
    observe_predict(time.perf_counter() - started)
    return predictions_response(ref["id"], answer["thresholds"], answer["predictions"],
                        parsed.min_confidence)


async def _body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nothing to answer
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The request's body once more, for the regular route; then what the client sends next."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
