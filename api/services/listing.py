"""Cursor pagination over time-ordered IDs: newest first, ``cursor`` is the last ID already seen."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

MAX_LIMIT = 500


def paginate(session: Session, query: Select, id_column: Any, limit: int, cursor: str | None) -> tuple[list[Any], str | None]:
    """ORM objects for ``select(Model)``, rows for a ``select`` of columns (one of them named ``id``)."""
    if cursor:
        query = query.where(id_column < cursor)
    page = session.execute(query.order_by(id_column.desc()).limit(limit + 1))
    rows = list(page.scalars() if len(query.column_descriptions) == 1 else page)
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor
