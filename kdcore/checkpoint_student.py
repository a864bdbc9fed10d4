"""The student inside a training checkpoint, as the same safetensors file a job's export writes.

A checkpoint holds the distiller's own weights — the student's under ``student.model.`` beside the
method's extra modules — and the student's description (``student``: the export's metadata), so
any step's student can be downloaded, loaded with :func:`kdcore.export.load_student_safetensors`,
or start a new job (``student.init``).
"""

from __future__ import annotations

from pathlib import Path

from kdcore.checkpoint import load_checkpoint
from kdcore.errors import BadSpec

STUDENT_PREFIX = "student.model."


def write_checkpoint_student(checkpoint: Path, dest: Path) -> Path:
    """Write the checkpoint's student weights to ``dest`` (safetensors, with arch/num_classes/input_size/mean/std and the step)."""
    from safetensors.torch import save_file

    state = load_checkpoint(checkpoint)
    description = state.get("student")
    if description is None:
        raise BadSpec("this checkpoint was written before checkpoints recorded their student's architecture; use a newer checkpoint")
    weights = {key.removeprefix(STUDENT_PREFIX): value.contiguous() for key, value in state["distiller"].items() if key.startswith(STUDENT_PREFIX)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(dest), metadata={**description, "checkpoint_step": str(state["global_step"])})
    return dest
