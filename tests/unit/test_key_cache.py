"""The API-key cache trusts a checked key for its TTL only, and never holds the key in plain text."""

from __future__ import annotations

import time

from api.auth import KeyCache
from core.api_keys import hash_key


def test_entry_expires_after_its_ttl():
    cache = KeyCache()
    cache.put("dk_secret", "ten_a", ttl_s=0.05)
    assert cache.get("dk_secret") == "ten_a"
    assert cache.get("dk_other") is None
    time.sleep(0.08)
    assert cache.get("dk_secret") is None


def test_zero_ttl_disables_the_cache():
    cache = KeyCache()
    cache.put("dk_secret", "ten_a", ttl_s=0)
    assert cache.get("dk_secret") is None


def test_only_hashes_are_stored_and_size_is_bounded():
    cache = KeyCache()
    for index in range(KeyCache.MAX_ENTRIES + 5):
        cache.put(f"dk_{index}", "ten_a", ttl_s=60)
    stored = cache._entries
    assert len(stored) <= KeyCache.MAX_ENTRIES
    assert "dk_1" not in stored and all(len(key) == len(hash_key("x")) for key in stored)
