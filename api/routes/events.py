"""The paged JSON twin of the SSE stream, for clients that poll instead of holding a connection open."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from api.deps import TenantDep, in_session
from api.errors import ApiError
from api.schemas.common import MAX_EVENT_SEQ
from api.services.events import events_page
from api.services.jobs import require_tenant_job
from api.services.listing import MAX_LIMIT
from client.models import JobEvent as JobEventOut
from client.models import JobEventPage

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}/events/list", response_model=JobEventPage)
async def list_job_events(
    job_id: str,
    tenant: TenantDep,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_SEQ)] = 0,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="the next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> JobEventPage:
    """Events with ``seq`` above ``after`` (or ``cursor``, the ``next_cursor`` of the previous page), oldest first."""
    if cursor is not None:
        if not cursor.isdigit():
            raise ApiError(422, f"cursor {cursor!r} is not one this endpoint gave out; pass the next_cursor of the previous page, or ?after=<seq>")
        after = int(cursor)
    return await in_session(_page, tenant, job_id, after, limit)


def _page(session: Session, tenant: str, job_id: str, after: int, limit: int) -> JobEventPage:
    require_tenant_job(session, tenant, job_id)
    items, next_cursor = events_page(session, job_id, after, limit)
    return JobEventPage(items=[JobEventOut(**item) for item in items], next_cursor=next_cursor)
