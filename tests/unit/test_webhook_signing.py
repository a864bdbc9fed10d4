"""The webhook signature scheme, checked against an HMAC computed here with the standard library."""

from __future__ import annotations

import hashlib
import hmac

from client.webhook_signing import sign, verify

BODY = b'{"type":"job.succeeded","data":{"job":{"id":"job_1"}}}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    header = sign("s3cret", BODY, now=1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_accepts_the_right_secret_within_tolerance_only():
    header = sign("s3cret", BODY, now=1_700_000_000)
    assert verify("s3cret", header, BODY, now=1_700_000_100)
    assert not verify("other", header, BODY, now=1_700_000_100)
    assert not verify("s3cret", header, BODY + b" ", now=1_700_000_100)
    assert not verify("s3cret", header, BODY, now=1_700_000_000 + 301)
    assert not verify("s3cret", "v1=deadbeef", BODY)
    rotated = header + ",v1=" + "0" * 64
    assert verify("s3cret", rotated, BODY, now=1_700_000_000)
