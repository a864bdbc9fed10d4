from __future__ import annotations

from api.schemas.common import Timestamped


class DatasetOut(Timestamped):
    id: str
    name: str | None
    classes: list[str]
    num_classes: int
    splits: dict[str, int]
    size_bytes: int
    sha256: str | None = None
    builtin: bool = False
