"""Cursor pagination over time-ordered IDs: newest first, ``cursor`` is the last ID already seen."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

MAX_LIMIT = 500


def paginate(session: Session, query: Select, id_column: Any, limit: int, cursor: str | None) -> tuple[list[Any], str | None]:
    if cursor:
        query = query.where(id_column < cursor)
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor
