"""create_app(): routers, error handlers, and the logging the service runs with."""
from fastapi import FastAPI

from app import errors, ops
from app.base_models.endpoints import router as base_models_router
from app.dashboard import endpoints as dashboard
from app.datasets import fast_csv
from app.datasets.endpoints import router as datasets_router
from app.jobs.endpoints import router as jobs_router
from app.keys.endpoints import router as keys_router
from app.limits import BodyLimitMiddleware
from app.models_api.endpoints import router as models_router
from app.observability import configure_logging
from app.observability.middleware import RequestContextMiddleware
from app.webhooks.endpoints import router as webhooks_router


def create_app() -> FastAPI:
    configure_logging()
    fast_csv.warm_up()
    app = FastAPI(title="adapt", version="0.1.0",
                  description="Adapt pretrained models to your own data: upload a dataset, "
                              "fine-tune, evaluate, predict.")
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)  # outermost: sees every response
    for router in (datasets_router, base_models_router, jobs_router, models_router, keys_router,
                   webhooks_router, ops.router):
        app.include_router(router)
    dashboard.install(app)
    return app


app = create_app()
