"""The hottest reads — GET /v1/jobs/{id} (what clients poll) and GET /v1/models/{id} — answered
before FastAPI's routing and dependency solving, which cost the event loop more per request than
the rest of the read. Only successes are answered here: anything else (a missing or foreign id,
no key, a database error) goes on to the regular route, which answers it in the service's error
shape; the reads are idempotent, so asking twice changes nothing. The regular routes stay the
documented ones (OpenAPI) and give the same bodies.

The read (one indexed SELECT, well under a millisecond) runs on the event loop itself: handing it
to the thread pool and back cost more than the read, and under load the hand-offs made the slow
tail (p99 189 → 58 ms, benchmarks/README.md). That holds while the database answers fast: a read
that fails with anything but the service's own errors, or takes longer than INLINE_BUDGET_S,
sends the reads to the thread pool for BACKOFF_S seconds, so a slow or unreachable database
never stalls the loop for longer than one such read."""
import logging
import re
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import get_settings
from app.errors import AppError
from app.jobs import service as jobs
from app.keys.auth import tenant_of
from app.models_api import service as models

_ID = r"([A-Za-z0-9_]{1,64})"
_READS = ((re.compile(rf"^/v1/jobs/{_ID}$"), "get_job",
           lambda tenant, object_id: jobs.read_one(get_settings(), tenant, object_id)),
          (re.compile(rf"^/v1/models/{_ID}$"), "get_model", models.read_one))


log = logging.getLogger(__name__)
INLINE_BUDGET_S = 0.05
BACKOFF_S = 30.0


class Inline:
    """Runs reads on the event loop while the database answers fast; a read that fails with
    anything but the service's own errors, or takes longer than INLINE_BUDGET_S, sends the reads
    to the thread pool for BACKOFF_S seconds."""

    def __init__(self) -> None:
        self.inline_from = 0.0  # monotonic time from which reads may run on the loop again

    async def run(self, read, *args):
        start = time.monotonic()
        if start < self.inline_from:
            return await run_in_threadpool(read, *args)
        try:
            result = read(*args)
        except AppError:
            raise
        except Exception as exc:
            self._back_off(f"a read failed ({type(exc).__name__})")
            raise
        if (took := time.monotonic() - start) > INLINE_BUDGET_S:
            self._back_off(f"a read took {took * 1000:.0f} ms")
        return result

    def _back_off(self, why: str) -> None:
        log.warning("%s: reads go through the thread pool for %.0f s", why, BACKOFF_S)
        self.inline_from = time.monotonic() + BACKOFF_S


class FastReads:
    def __init__(self, app: ASGIApp, routes: list) -> None:
        self.app = app
        self._route_of = {r.name: r for r in routes}
        self.inline = Inline()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            for pattern, name, read in _READS:
                if m := pattern.match(scope["path"]):
                    try:
                        tenant = await tenant_of(Request(scope))
                        body = await self.inline.run(read, tenant, m.group(1))
                    except Exception:  # noqa: BLE001 - the regular route answers it
                        break
                    scope["route"] = self._route_of[name]  # the access log's and metrics' label
                    return await JSONResponse(body)(scope, receive, send)
        await self.app(scope, receive, send)
