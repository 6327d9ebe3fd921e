"""The relay's and dispatcher's outer loop: a lost connection restarts the loop; a bug still stops it."""

import psycopg
import pytest
import redis.exceptions

from api import reconnecting
from api.reconnecting import run_reconnecting


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconnecting, "RECONNECT_PAUSE_S", 0)


def test_a_lost_connection_starts_the_loop_again() -> None:
    outages = [psycopg.OperationalError("server closed the connection"), redis.exceptions.ConnectionError("gone")]
    calls = 0

    def serve() -> None:
        nonlocal calls
        calls += 1
        if outages:
            raise outages.pop(0)

    run_reconnecting("test loop", serve, stopping=lambda: calls >= 3)

    assert calls == 3


def test_a_bug_is_not_mistaken_for_an_outage() -> None:
    def serve() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_reconnecting("test loop", serve, stopping=lambda: False)


def test_nothing_runs_once_stopping() -> None:
    run_reconnecting("test loop", lambda: pytest.fail("served while stopping"), stopping=lambda: True)
