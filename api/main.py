"""The FastAPI application: routers, problem+json errors, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.access_log import log_access
from api.body_limit import JsonBodyLimit
from api.errors import install_error_handlers
from api.metrics import install_metrics, record_request
from api.response_observer import ResponseObserver
from api.routes import artifact_links, artifacts, checkpoints, console, datasets, events, health, jobs, lifecycle, methods, teachers, webhooks
from core.logging_config import configure_logging


def _warm_builtin_datasets() -> None:
    from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info

    for name in BUILTIN_DATASETS:
        builtin_info(name)


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Freeze the heap the imports built, and load the built-in datasets' metadata off the event loop.

    The API imports torch and timm for validation: millions of long-lived objects that every full
    garbage collection would walk, stalling requests by a few hundred ms. ``gc.freeze`` exempts
    everything alive at startup, so collections only see what requests allocate. The first job on
    ``builtin:digits`` would otherwise load the dataset inside its request; the server answers
    meanwhile.
    """
    gc.collect()
    gc.freeze()
    warming = asyncio.get_running_loop().run_in_executor(None, _warm_builtin_datasets)
    yield
    with contextlib.suppress(Exception):  # a failed warm-up already showed in the requests that needed it
        await warming


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
    app.add_middleware(JsonBodyLimit)
    app.add_middleware(ResponseObserver, observers=[record_request, log_access])
    for module in (health, teachers, datasets, jobs, lifecycle, checkpoints, events, webhooks, artifacts, artifact_links, methods):
        app.include_router(module.router)
    app.include_router(console.router)
    return app


app = create_app()
