"""The FastAPI application: routers, problem+json errors, Prometheus metrics."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.logging_config import configure_logging, log_access
from api.metrics import install_metrics, record_request
from api.response_observer import ResponseObserver
from api.routes import artifact_links, artifacts, datasets, events, health, jobs, methods, teachers, webhooks


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Load what the first requests would (the built-in datasets' metadata), then freeze the heap.

    The API imports torch and timm for validation: millions of long-lived objects that every full
    garbage collection would walk, stalling requests by a few hundred ms. ``gc.freeze`` exempts
    everything alive at startup, so collections only see what requests allocate.
    """
    from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info

    for name in BUILTIN_DATASETS:
        builtin_info(name)
    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan,
        title="Distillery",
        version="1.0.0",
        summary="Distillation as a service: upload teachers and data, submit a job, download a smaller student.",
    )
    configure_logging("api")
    install_error_handlers(app)
    install_metrics(app)
    app.add_middleware(ResponseObserver, observers=[record_request, log_access])
    for module in (health, teachers, datasets, jobs, events, webhooks, artifacts, artifact_links, methods):
        app.include_router(module.router)
    return app


app = create_app()
