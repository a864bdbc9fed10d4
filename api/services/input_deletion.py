"""Deleting a job input (a teacher or a dataset): refused while a queued or running job uses it, then its row and its stored files."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.orm import Session

from api.errors import ApiError
from core.models import DatasetRow, TeacherRow
from core.storage import get_store


def delete_unused_input(session: Session, tenant: str, kind: Literal["teacher", "dataset"], row: TeacherRow | DatasetRow, user: str | None) -> None:
    """Delete ``row`` and the files under ``tenants/{tenant}/{kind}s/{id}``, or answer 409 naming ``user``, an active job that needs it."""
    object_id = row.id  # read now: the row's attributes expire with the commit, and it will be gone
    if user is not None:
        raise ApiError(409, f"{kind} {object_id} is used by job {user}, which is still queued or running; cancel it or wait for it to finish")
    session.delete(row)
    session.commit()
    get_store().delete_prefix(f"tenants/{tenant}/{kind}s/{object_id}")
