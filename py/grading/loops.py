"""What the graders of miniloop's EventLoop share (lab 2 writes it, lab 3 builds its executor on it).

A test gets a fresh loop from the `loop` fixture (closed after it) and drives it with run(),
which fails with grading.deadline's message (where each thread waited) instead of hanging
when the learner's loop never finishes. A test module takes the fixture by importing it:

    from grading.loops import loop, run   # noqa: F401  (pytest finds the fixture by its name)

The EventLoop is the implementation under test's: the grader's runner puts its py/ first
on the path before any test module is imported.
"""
from __future__ import annotations

from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from grading.deadline import deadline
from miniloop.futures import Future
from miniloop.loop import EventLoop


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    """A new EventLoop for one test, closed at its end."""
    lp = EventLoop()
    yield lp
    lp.close()


def run(loop: EventLoop, aw: Future[Any] | Coroutine[Any, Any, Any], seconds: float = 3.0, advice: str = "") -> Any:
    """loop.run_until_complete(aw), failing after `seconds` (with advice) instead of hanging."""
    with deadline(seconds, "run_until_complete", advice):
        return loop.run_until_complete(aw)
