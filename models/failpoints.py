"""Test-only failpoints: make a process die at a named point, to prove a crash there loses nothing.

``FARM_FAILPOINTS=relay.after_publish=exit`` makes the outbox relay exit (as if killed) right after it
published a batch and before it marked the batch sent. Nothing happens unless the setting names a point;
production leaves it empty. The fault suite (tests/faults) sets it on the one process it kills.
"""

import logging
import os
from dataclasses import dataclass, field

log = logging.getLogger("farm.failpoints")

# Every point a process checks, and where it sits.
POINTS = {
    "relay.before_publish": "the relay read committed outbox rows and has published none of them",
    "relay.after_publish": "the relay published a batch and has not yet committed it as sent",
}
ACTIONS = ("exit",)
# The exit status of a process stopped by a failpoint: no cleanup runs, as after kill -9.
FAILPOINT_EXIT_CODE = 86


def parse_failpoints(text: str) -> dict[str, str]:
    """``"relay.after_publish=exit"`` → {point: action}; raises ValueError naming an unknown point or action."""
    actions: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        point, _, action = entry.partition("=")
        if point not in POINTS:
            raise ValueError(f"unknown failpoint {point!r}: use one of {', '.join(POINTS)}")
        if action not in ACTIONS:
            raise ValueError(f"failpoint {point!r} has action {action!r}: use one of {', '.join(ACTIONS)}")
        actions[point] = action
    return actions


@dataclass(frozen=True)
class Failpoints:
    """The failpoints one process has armed (none by default)."""

    actions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_setting(cls, text: str) -> "Failpoints":
        return cls(parse_failpoints(text))

    def hit(self, point: str) -> None:
        """Act if ``point`` is armed: ``exit`` ends the process at once, skipping every cleanup."""
        assert point in POINTS, point
        if self.actions.get(point) == "exit":
            log.critical("failpoint %s: exiting now (%s)", point, POINTS[point])
            logging.shutdown()  # the log line is the test's evidence of where the process died
            os._exit(FAILPOINT_EXIT_CODE)


NO_FAILPOINTS = Failpoints()
