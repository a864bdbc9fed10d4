"""The FastAPI application: routers, problem+json errors, Prometheus metrics."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.metrics import install_metrics
from api.routes import artifacts, datasets, health, jobs, methods, teachers


def create_app() -> FastAPI:
    app = FastAPI(
        title="Distillery",
        version="1.0.0",
        summary="Distillation as a service: upload teachers and data, submit a job, download a smaller student.",
    )
    install_error_handlers(app)
    install_metrics(app)
    for module in (health, teachers, datasets, jobs, artifacts, methods):
        app.include_router(module.router)
    return app


app = create_app()
