"""Celery's time limits and visibility timeout come from the settings, in one config every process loads."""

import pytest
from pydantic import ValidationError

from models.queue import celery_config
from models.settings import Settings


def test_every_process_gets_the_limits_of_its_settings() -> None:
    settings = Settings(task_soft_time_limit_seconds=3, task_time_limit_seconds=5, visibility_timeout_seconds=30)
    config = celery_config("redis://127.0.0.1:6379/0", settings)
    assert (config["task_soft_time_limit"], config["task_time_limit"]) == (3, 5)
    assert config["visibility_timeout"] == 30
    assert config["broker_transport_options"]["visibility_timeout"] == 30
    assert config["result_backend_transport_options"]["visibility_timeout"] == 30


def test_production_defaults_keep_redelivery_far_beyond_the_hard_limit() -> None:
    config = celery_config("redis://127.0.0.1:6379/0", Settings())
    assert config["task_soft_time_limit"] < config["task_time_limit"] < config["visibility_timeout"]
    assert config["visibility_timeout"] >= 5 * config["task_time_limit"]


@pytest.mark.parametrize(
    "limits",
    [
        {"task_soft_time_limit_seconds": 5, "task_time_limit_seconds": 5},  # soft must come first
        {"task_time_limit_seconds": 4000},  # past the visibility timeout: a running job would be redelivered
    ],
)
def test_limits_out_of_order_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="FARM_TASK_SOFT_TIME_LIMIT_SECONDS < FARM_TASK_TIME_LIMIT_SECONDS"):
        Settings(**limits)  # type: ignore[arg-type]
