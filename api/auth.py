"""Which tenant a bearer key belongs to, with a short-lived cache in front of the database."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.api_keys import hash_key
from core.models import ApiKey


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
