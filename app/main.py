"""create_app(): routers, error handlers, the logging the service runs with, and the lifespan that
holds the process's shared resources (database engine, queue producer, model cache)."""
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from app import errors, janitor, ops, queue
from app.base_models.endpoints import router as base_models_router
from app.config import get_settings
from app.dashboard import endpoints as dashboard
from app.datasets import fast_csv
from app.datasets.endpoints import router as datasets_router
from app.exports.endpoints import router as exports_router
from app.model_selection.endpoints import router as model_selection_router
from app.db import dispose_engine, get_engine
from app.jobs.endpoints import router as jobs_router
from app.keys.endpoints import router as keys_router
from app.fast_predict import FastPredict
from app.fast_reads import FastReads
from app.limits import BodyLimitMiddleware
from app.models_api.endpoints import fanout_router
from app.models_api.endpoints import router as models_router
from app.models_api import model_server
from app.models_api.inference import close_model_cache, model_cache
from app.observability import configure_logging, watch_loaded_models
from app.observability.middleware import RequestContextMiddleware
from app.shared_state import held_connection
from app.webhooks.endpoints import router as webhooks_router


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create what every request shares before the first one; release it at shutdown (loaded
    models and their batcher threads, broker connections, pooled database connections and the
    one held for the revocation generation). Leftovers of API processes that died (partial
    uploads in the staging dir) are removed first."""
    settings = get_settings()
    janitor.sweep(settings.data_dir)
    fast_csv.warm_up()
    app.state.engine, app.state.producer = get_engine(), queue.producer()
    app.state.model_cache = model_cache()
    if settings.model_server:  # the models are loaded there: /metrics asks for their memory
        watch_loaded_models(partial(model_server.loaded_memory_remote, settings))
    try:
        yield
    finally:
        close_model_cache()
        queue.close_producer()
        held_connection.close()
        dispose_engine()


def create_app() -> FastAPI:
    configure_logging(background=True)  # the access lines are written off the event loop
    app = FastAPI(title="adapt", version="0.1.0", lifespan=lifespan,
                  # stable operationIds (the OpenAPI links refer to them): the route's name
                  generate_unique_id_function=lambda route: route.name,
                  description="Adapt pretrained models to your own data: upload a dataset, "
                              "fine-tune, evaluate, predict.")
    errors.install(app)
    # innermost: inside the access log and metrics
    app.add_middleware(FastPredict, routes=models_router.routes)
    app.add_middleware(FastReads, routes=[*jobs_router.routes, *models_router.routes])
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)  # outermost: sees every response
    for router in (datasets_router, base_models_router, jobs_router, models_router, keys_router,
                   webhooks_router, exports_router, model_selection_router, fanout_router,
                   ops.router):
        app.include_router(router)
    dashboard.install(app)
    return app


app = create_app()
