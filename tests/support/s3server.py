"""A real S3-compatible server for tests: moto's standalone server as a process on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx
from service import free_port, wait_until

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_server(log_dir: Path, bucket: str = "distillery") -> Iterator[dict[str, str]]:
    """Start ``moto_server``, create ``bucket``; yield the environment that points boto3 at it."""
    port = free_port()
    log = open(log_dir / "moto.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return httpx.get(endpoint + "/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_until(answering, 30, what="moto_server to answer")
        env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
        bucket_client(env).create_bucket(Bucket=bucket)
        yield env
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def bucket_client(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def bucket_keys(env: dict[str, str], bucket: str = "distillery") -> list[str]:
    pages = bucket_client(env).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
