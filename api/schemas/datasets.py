"""The JSON body of ``POST /v1/datasets``: a dataset registered by reference instead of uploaded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DatasetFromUri(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    uri: str = Field(
        min_length=1,
        max_length=2000,
        description="the folder holding train/ and val/: s3://bucket/prefix/ (the server's store) or file:///… (embedded default), "
        "under a prefix the operator allows this tenant (DISTILLERY_DATASET_URI_PREFIXES)",
    )
    format: Literal["imagefolder", "webdataset"] = Field(
        description="imagefolder: train/<class>/<image> and val/<class>/<image> objects; "
        "webdataset: plain .tar shards under train/ and val/ with <key>.<image ext> and <key>.cls members (and index.json if written by kdcore)"
    )
