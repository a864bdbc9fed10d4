"""Typed failures. Each carries a machine-readable ``code`` the service stores on a failed job."""


class KdError(Exception):
    """Base class: a failure the user can act on (as opposed to a bug)."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadTeacher(KdError):
    code = "bad_teacher"


class BadDataset(KdError):
    code = "bad_dataset"


class BadSpec(KdError):
    code = "bad_spec"


class NanLoss(KdError):
    code = "nan_loss"


class OutOfMemory(KdError):
    code = "out_of_memory"


class TimeLimitExceeded(KdError):
    code = "timeout"


class Cancelled(KdError):
    code = "cancelled"


class Paused(KdError):
    """The caller asked the run to pause (``TrainCallbacks.should_pause``): it stopped at a step boundary after writing a checkpoint."""

    code = "paused"


class ExportMismatch(KdError):
    code = "export_mismatch"


class RankFailed(KdError):
    """A rank of a multi-process job died (killed, crashed, lost its node): the attempt ends and the job may resume."""

    code = "rank_failed"
