"""The JSON body of ``POST /v1/teachers``: a teacher registered by reference instead of uploaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from kdcore.spec import ArchKwargs


class TeacherFromUri(BaseModel):
    """The upload's form fields, plus where the model already is; lists or the form's comma-separated text alike."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(
        min_length=1,
        max_length=2000,
        description="models:/<name>/<version> or models:/<name>@<alias> (the MLflow registry at MLFLOW_TRACKING_URI), or s3://bucket/key under a prefix the operator allows",
    )
    format: str = Field(description="safetensors | state_dict | onnx | torchscript | exported_program")
    arch: str | None = Field(default=None, max_length=200)
    arch_kwargs: ArchKwargs
    num_classes: int = Field(ge=1, le=100_000)
    input_size: list[int] | str = Field(description="[C, H, W] or 'C,H,W', e.g. [3, 32, 32]")
    mean: list[float] | str | None = None
    std: list[float] | str | None = None
    name: str | None = Field(default=None, max_length=200)
