"""A gateway process takes what it loaded at start-up out of the garbage collector's full passes."""

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from api.main import app


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


async def freeze_count_while_serving() -> int:
    async with app.router.lifespan_context(app):
        return gc.get_freeze_count()


def test_start_up_objects_are_frozen_and_start_up_garbage_is_collected_first(unfrozen: None) -> None:
    garbage = Node()
    garbage.partner = Node()
    garbage.partner.partner = garbage  # a cycle: only a collection frees it
    collected = weakref.ref(garbage)
    del garbage

    frozen = asyncio.run(freeze_count_while_serving())

    assert frozen > 10_000  # the app's routes, models and libraries
    assert collected() is None  # freed, not frozen for the process's life
