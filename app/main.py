"""create_app(): routers, error handlers, and the logging the service runs with."""
import logging

from fastapi import FastAPI

from app import errors, ops
from app.base_models.endpoints import router as base_models_router
from app.datasets.endpoints import router as datasets_router
from app.jobs.endpoints import router as jobs_router
from app.keys.endpoints import router as keys_router
from app.limits import BodyLimitMiddleware
from app.models_api.endpoints import router as models_router


def create_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = FastAPI(title="adapt", version="0.1.0",
                  description="Adapt pretrained models to your own data: upload a dataset, "
                              "fine-tune, evaluate, predict.")
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware)
    for router in (datasets_router, base_models_router, jobs_router, models_router, keys_router,
                   ops.router):
        app.include_router(router)
    return app


app = create_app()
