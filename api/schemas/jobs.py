"""The body of ``POST /v1/jobs``: the stored spec's fields, before submission fills in defaults."""

from __future__ import annotations

from core.job_spec import JobSpecFields


class JobCreate(JobSpecFields):
    """A job request; ``api.services.jobs.validate`` turns it into a ``core.job_spec.StoredJobSpec``."""
