"""The one status enum of a prediction (Replicate's public values)."""

from enum import StrEnum


class Status(StrEnum):
    STARTING = "starting"  # accepted and queued, not yet claimed by a worker
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})
