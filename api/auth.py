"""API keys: shown once, stored only as a SHA-256 hash (keys are 256-bit random, so no salt is needed)."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.ids import new_id
from api.models import ApiKey, Tenant

KEY_PREFIX = "dk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, tenant_name: str) -> str:
    """Create the tenant if needed and return a new key (the only time it is visible)."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), name=tenant_name)
        session.add(tenant)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(id=new_id("key"), tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:10]))
    return key


def tenant_for_key(session: Session, key: str) -> str | None:
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
    return row.tenant_id if row else None


class KeyCache:
    """Remembers which tenant a valid key belongs to for a few seconds (``DISTILLERY_AUTH_CACHE_S``).

    Clients poll job status many times a second; this keeps the key lookup off the database for
    them. Entries are keyed by the key's hash, so no plaintext key stays in memory, and expire on
    their own: a key revoked in the database stops working within that time. Unknown keys are
    never cached. Reads and writes are single dict operations, safe across the API's threads.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, float]] = {}

    def get(self, key: str) -> str | None:
        entry = self._entries.get(hash_key(key))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, key: str, tenant: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[hash_key(key)] = (tenant, time.monotonic() + ttl_s)


KEY_CACHE = KeyCache()
