"""API keys: shown once, stored only as a SHA-256 hash (keys are 256-bit random, so no salt is needed).

A key's first characters (``prefix``, e.g. ``dk_3fGh9aQ``) are kept in the clear so an operator can
tell keys apart in ``distillery keys list`` without the secret; a key may carry an expiry, and
revoking one stamps ``revoked_at`` (the row stays, so the listing shows what happened to it).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Literal, overload

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.ids import new_id
from core.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "dk_"
PUBLIC_CHARS = 10
KeyState = Literal["active", "revoked", "expired"]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; every one the service stores is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def key_state(row: ApiKey, now: datetime | None = None) -> KeyState:
    if row.revoked_at is not None:
        return "revoked"
    expires_at = as_utc(row.expires_at)
    if expires_at is not None and expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def issue_key(session: Session, tenant_name: str, expires_in_days: float | None = None) -> tuple[ApiKey, str]:
    """Create the tenant if needed and a new key; returns its row and the key (the only time it is visible)."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), name=tenant_name)
        session.add(tenant)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    row = ApiKey(id=new_id("key"), tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:PUBLIC_CHARS], expires_at=expires_at)
    session.add(row)
    return row, key


def create_key(session: Session, tenant_name: str, expires_in_days: float | None = None) -> str:
    return issue_key(session, tenant_name, expires_in_days)[1]


def list_keys(session: Session, tenant_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (with its tenant's name), oldest first; only one tenant's when ``tenant_name`` is given."""
    query = select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id).order_by(ApiKey.created_at, ApiKey.id)
    if tenant_name is not None:
        query = query.where(Tenant.name == tenant_name)
    return [(row, name) for row, name in session.execute(query).all()]


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    """Stamp the key revoked (once: a second revoke keeps the first time); None when no key has this ID."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
