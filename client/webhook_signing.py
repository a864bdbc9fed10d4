"""Webhook signatures: ``Distillery-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

The scheme is Stripe's: signing the timestamp with the body lets a receiver refuse replays older
than a tolerance, and ``v1=`` leaves room for a second scheme during a key or algorithm rotation.
Receivers can import :func:`verify` or recompute the HMAC with any standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Distillery-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    return signature(secret, body, int(now if now is not None else time.time()))


def verify(secret: str, header: str, body: bytes, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when one ``v1`` signature matches and the timestamp is within ``tolerance_s`` of now."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in fields if key.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp).split("v1=", 1)[1]
    return any(key.strip() == "v1" and hmac.compare_digest(value.strip(), expected) for key, value in fields)
