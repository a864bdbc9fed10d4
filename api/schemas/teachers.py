from __future__ import annotations

from api.schemas.common import Timestamped


class TeacherOut(Timestamped):
    id: str
    name: str | None
    format: str
    arch: str | None
    num_classes: int
    input_size: list[int]
    mean: list[float] | None = None
    std: list[float] | None = None
    params: int
    sha256: str
    size_bytes: int
    supports_features: bool
