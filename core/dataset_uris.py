"""Where a tenant may register datasets by reference (``DISTILLERY_DATASET_URI_PREFIXES``), and URIs of stored objects.

The setting is a JSON list of URI prefixes in which ``{tenant}`` stands for the tenant's ID (its
folder in the store); without it a tenant may register only folders under its own
``<storage_url>/tenants/<tenant>/datasets/``. The matching rules (segment boundaries, no ``.``,
``..`` or empty segments, ``file://`` paths resolved so a link cannot lead out) are
:mod:`core.uri_allowlist`'s, shared with teachers registered by reference.
"""

from __future__ import annotations

import os

from core.config import Settings
from core.uri_allowlist import allowed_prefix, granted_prefixes, refusal

DATASETS_FOLDER = "tenants/{tenant}/datasets/"


def store_uri(settings: Settings, key: str) -> str:
    """The URI of an object (or folder) ``key`` of the service's own store."""
    return settings.resolved_storage_url.rstrip("/") + "/" + key.lstrip("/")


def s3_endpoint(settings: Settings) -> str | None:
    """The S3 endpoint kdcore's readers should use: the service's setting, else boto3's own ``AWS_ENDPOINT_URL``."""
    return settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")


def dataset_uri_refusal(settings: Settings, tenant: str, uri: str) -> str | None:
    """Why ``uri`` (a folder) may not be registered by this tenant, or ``None`` when it may."""
    prefixes = granted_prefixes(settings.dataset_uri_prefixes, store_uri(settings, DATASETS_FOLDER), tenant)
    if allowed_prefix(uri.rstrip("/"), prefixes) is not None:
        return None
    return refusal(uri, prefixes, "datasets", "DISTILLERY_DATASET_URI_PREFIXES")
