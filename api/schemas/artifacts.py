from __future__ import annotations

from pydantic import BaseModel, Field


class ArtifactLinkOut(BaseModel):
    id: str
    filename: str
    sha256: str
    size_bytes: int
    url: str = Field(description="a presigned GET URL on the object store; needs no API key until it expires")
    expires_at: str
