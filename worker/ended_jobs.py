"""What a worker tidies once an attempt has ended its job: the checkpoints it no longer needs, and its work folder.

Storage holds every checkpoint a retry could resume from (``JobRunner._restore_checkpoint`` brings
the newest back), so the local work folder — inputs, checkpoints, exports, the teacher-output
store — is only a cache once the job has ended, and goes.
"""

from __future__ import annotations

import logging
import shutil

from core.config import get_settings
from core.db import session_scope
from core.retention import prune_checkpoints
from core.storage import get_store
from worker.callbacks import retry_db
from worker.spec_builder import job_work_dir

log = logging.getLogger("distillery.worker")


def tidy_ended_job(job_id: str) -> None:
    settings = get_settings()

    def prune() -> int:
        with session_scope() as session:
            return prune_checkpoints(session, get_store(), job_id, settings.keep_checkpoints)

    try:
        pruned = retry_db(prune, f"prune checkpoints of {job_id}")
    except Exception as exc:  # the job has ended either way; what is left is only space
        log.warning("job %s ended, but its older checkpoints were not pruned (%s)", job_id, exc)
        pruned = 0
    if pruned:
        log.info("job %s ended: %d older checkpoint(s) deleted, the newest %d kept", job_id, pruned, settings.keep_checkpoints)
    shutil.rmtree(job_work_dir(settings, job_id), ignore_errors=True)
