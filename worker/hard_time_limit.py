"""What happens to a prediction when Celery's hard time limit kills the pool child running it.

The soft limit lets the runner record a readable failure; a job that ignores it (stuck outside Python)
is killed at the hard limit, and the killed child can record nothing. The worker's parent process, which
did the killing, ends the prediction ``failed`` here instead, at once: the message is acknowledged on a
timeout (a hang would repeat), and waiting for the lease to expire would only run it again. Jobs batched with
it (FARM_BATCH_MAX_IMAGES) are not named by the task: their leases run out and the reaper queues them again. No
torch here: this runs in the parent.
"""

import logging

from celery.worker.request import Request

from models import lifecycle
from models.db import session_scope
from models.settings import get_settings
from worker.runner import worker_name

log = logging.getLogger("farm.worker")

HARD_TIME_LIMIT_ERROR = (
    "Prediction took longer than {seconds:g} s, the worker's hard time limit; its worker process was killed."
)


class RenderRequest(Request):  # type: ignore[misc]
    """A render task's request, as the worker's parent process sees it."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft or not self.args:
            return  # the soft limit is handled in the child, by the runner
        prediction_id = str(self.args[0])
        settings = get_settings()
        # Fenced by the killed child's name: a prediction the reaper already gave to another worker is left alone.
        try:
            with session_scope(settings.database_url) as session:
                failed = lifecycle.fail_killed_run(
                    session,
                    prediction_id=prediction_id,
                    worker=worker_name(settings, pid=self.worker_pid),
                    error=HARD_TIME_LIMIT_ERROR.format(seconds=timeout),
                )
        except Exception:  # the parent must go on; the lease runs out and the reaper takes over
            log.exception("prediction %s: recording the hard time limit failed", prediction_id)
            return
        outcome = "ended failed" if failed else "left alone (no longer this child's claim)"
        log.error("prediction %s: killed at the hard time limit of %g s; %s", prediction_id, timeout, outcome)
