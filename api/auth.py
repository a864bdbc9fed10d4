"""Which tenant a bearer key belongs to, with a short-lived cache in front of the database."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.api_keys import as_utc, hash_key, key_state
from core.models import ApiKey, utcnow


@dataclass(frozen=True)
class KeyVerdict:
    """Whose key it is, or why it is refused; ``valid_for_s`` is how long until it expires (None: no expiry)."""

    tenant: str | None
    refusal: str | None = None
    valid_for_s: float | None = None


def check_key(session: Session, key: str) -> KeyVerdict:
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None:
        return KeyVerdict(None, "the API key is not valid (unknown)")
    now = utcnow()
    state = key_state(row, now)
    if state == "revoked":
        assert row.revoked_at is not None  # key_state calls a key revoked only when it has revoked_at
        return KeyVerdict(None, f"the API key {row.prefix}… was revoked at {as_utc(row.revoked_at).isoformat(timespec='seconds')}")
    expires_at = as_utc(row.expires_at)
    if state == "expired":
        assert expires_at is not None  # key_state calls a key expired only when it has expires_at
        return KeyVerdict(None, f"the API key {row.prefix}… expired at {expires_at.isoformat(timespec='seconds')}")
    return KeyVerdict(row.tenant_id, valid_for_s=(expires_at - now).total_seconds() if expires_at is not None else None)


class KeyCache:
    """Remembers which tenant a valid key belongs to for a few seconds (``DISTILLERY_AUTH_CACHE_S``).

    Clients poll job status many times a second; this keeps the key lookup off the database for
    them. Entries are keyed by the key's hash, so no plaintext key stays in memory, and expire on
    their own: a key revoked in the database stops working within that time, and an entry never
    outlives the key's own expiry. Unknown, revoked and expired keys are never cached. Reads and writes are single dict operations, safe across the API's threads.
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
