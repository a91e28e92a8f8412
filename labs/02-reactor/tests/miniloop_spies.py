"""Lab 2's grader helpers for the Python loop: watching an EventLoop from inside.

The tests in test_miniloop.py and test_miniloop_sockets.py run your loop in this process;
these spies record what it did (each call of one of its methods, the timeout of each
select(), what its selector watches) while the real code still runs. The loop itself
comes from grading.loops (the `loop` fixture and run(), shared with lab 3).
"""
from __future__ import annotations

import selectors
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from grading.deadline import deadline
from miniloop.loop import EventLoop


def run_turns(loop: EventLoop, seconds: float = 3.0) -> None:
    """loop.run_forever() until a callback calls loop.stop(), failing after `seconds`."""
    with deadline(seconds, "run_forever (waiting for loop.stop())"):
        loop.run_forever()


def spy(loop: EventLoop, name: str) -> list[tuple[Any, ...]]:
    """Record every call of loop.<name> (the arguments) and still do the real call."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(loop, name)

    def wrapper(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    setattr(loop, name, wrapper)   # an instance attribute hides the method: self.<name>() finds it
    return calls


def spy_select(loop: EventLoop, on_call: Callable[[float | None], None] | None = None) -> list[float | None]:
    """Record the timeout of every selector.select() (one per turn of the loop)."""
    timeouts: list[float | None] = []
    real = loop._selector.select

    def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        timeouts.append(timeout)
        if on_call is not None:
            on_call(timeout)
        return real(timeout)

    loop._selector.select = select  # type: ignore[method-assign]
    return timeouts


def watched(loop: EventLoop, fd: int) -> int:
    """The events the loop's selector watches on fd (0 if it does not know fd)."""
    key = loop._selector.get_map().get(fd)
    return key.events if key is not None else 0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected non-blocking sockets (a socketpair: no network needed)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()
