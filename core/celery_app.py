"""The Celery app. JSON only, late acks, one message at a time, one job per child process.

With no ``DISTILLERY_BROKER_URL`` it uses kombu's filesystem transport under the data folder, so
the embedded default needs no broker server, through ``core.broker_filesystem`` (whole messages only,
an unreadable one set aside in ``broker/bad``). ``worker_max_tasks_per_child=1`` gives every job a
fresh process: a crash, a leak or a CUDA context never outlives its job.
"""

from __future__ import annotations

from celery import Celery

from core.config import get_settings

QUEUE = "distillery"


def _make_app() -> Celery:
    settings = get_settings()
    app = Celery("distillery")
    options: dict = {"visibility_timeout": 24 * 3600}
    transport = None
    if settings.uses_embedded_broker:
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        broker, transport = "filesystem://", "core.broker_filesystem:Transport"
        options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "bad_folder": str(folder / "bad"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    else:
        assert settings.broker_url is not None  # uses_embedded_broker is False only when it is set
        broker = settings.broker_url
    app.conf.update(
        broker_url=broker,
        broker_transport=transport,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=1,
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        broker_pool_limit=4,
    )
    return app


celery_app = _make_app()


def queue_depth() -> int | None:
    """Messages waiting (Redis list length or files in the filesystem queue); None if unknown."""
    settings = get_settings()
    try:
        if settings.uses_embedded_broker:
            return sum(1 for _ in (settings.broker_folder / "queue").glob("*.msg"))
        with celery_app.connection_for_read() as connection:
            return int(connection.default_channel.client.llen(QUEUE))
    except Exception:
        return None
