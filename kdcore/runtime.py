"""Device, mixed precision and memory-format choices, resolved once from the job's training config.

``auto`` means: on CUDA use bf16 autocast where the GPU supports it (fp16 with a GradScaler
otherwise) and channels_last; on CPU use plain fp32, which is both fastest and exact there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from kdcore.errors import BadSpec
from kdcore.spec import TrainingConfig


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    compile: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        if self.amp_dtype is torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None


def resolve_runtime(config: TrainingConfig) -> Runtime:
    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise BadSpec("training.device is 'cuda' but this worker has no CUDA device; use 'auto' or 'cpu'")
    device = torch.device("cuda" if (config.device == "cuda" or (config.device == "auto" and cuda)) else "cpu")
    amp: torch.dtype | None = None
    if device.type == "cuda":
        if config.amp == "auto":
            amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif config.amp in ("bf16", "fp16"):
            amp = torch.bfloat16 if config.amp == "bf16" else torch.float16
    elif config.amp == "bf16":
        amp = torch.bfloat16
    elif config.amp == "fp16":
        raise BadSpec("training.amp 'fp16' needs a CUDA device; use 'bf16', 'auto' or 'off' on CPU")
    channels_last = config.channels_last in ("on", True) or (config.channels_last == "auto" and device.type == "cuda")
    return Runtime(device=device, amp_dtype=amp, channels_last=channels_last, compile=config.compile)
