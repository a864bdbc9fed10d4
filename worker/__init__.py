"""Celery workers: claim a job row, build a kdcore spec, train, write progress and artifacts back."""
