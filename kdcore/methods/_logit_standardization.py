"""Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024) as an
option of ``kd``, ``dkd`` and ``ctkd``: student and teacher logits are z-scored before the
temperature softmax, so the student matches the teacher's logit relations, not their range.

The official code (sunshangquan/logit-standardization-KD, ``mdistiller/distillers/KD.py``,
``DKD.py``, ``CTKD/distiller_zoo/KD.py``) standardises right before the loss; a learned CTKD
temperature is still predicted from the raw logits. Its ``--logit-stand`` flag comes with
``--base-temp 2 --kd-weight 9``: τ 2 and KD weight 9 for KD, α and β ×9 with τ 2 for DKD, and KD
weight 9 (CE 0.1) for CTKD. Each method's preset ``logit_standardization`` holds those values and is
applied whenever the flag is true; values given with it override them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

BASE_TEMPERATURE = 2.0
KD_WEIGHT = 9.0

LogitStandardization = Annotated[
    bool, Field(description="z-score student and teacher logits before the softmax (Sun et al. 2024); brings the paper's τ 2 and KD weight 9 unless given")
]


def logit_standardization_preset(**values: Any) -> dict[str, dict[str, Any]]:
    """The ``presets`` entry: the flag on, plus the official code's companion values."""
    return {"logit_standardization": {"logit_standardization": True, **values}}
