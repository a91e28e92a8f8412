"""Lab 3's grader helpers for the Python pool: what the tests of test_py_executor.py,
test_py_asyncfile.py and test_py_pool_seen.py share (the file's size, the pool's shape, spies
on the loop, waiting for the workers to settle, a pool fixture that never hangs the grader).

The loop comes from grading.loops (the `loop` fixture and run(), shared with lab 2).
"""
from __future__ import annotations

import array
import fcntl
import os
import termios
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from grading import loops

from miniloop.executor import ThreadPool
from miniloop.futures import Future
from miniloop.loop import EventLoop
from xray import proc

EPOLL_WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
DATA_SIZE = 4 << 20         # the file the scripts read: 4 MiB...
CHUNK = 64 << 10            # ...in 64 preads of 64 KiB
WORKERS = 3                 # not the default 4: the thread count must come from the argument


ADVICE = "Did a worker die (see the exception printed above), or did the loop miss a wake-up?"


def run(loop: EventLoop, aw: Future[Any] | Coroutine[Any, Any, Any], seconds: float = 5.0) -> Any:
    """grading.loops.run with this lab's advice: loop.run_until_complete(aw), failing after `seconds`."""
    return loops.run(loop, aw, seconds, ADVICE)


async def gather(*futures: Future[Any]) -> list[Any]:
    return [await fut for fut in futures]


@dataclass
class Turn:
    """One selector.select() call of the loop: one turn."""

    timeout: float | None
    duration: float
    fds: list[int]          # the fds it reported ready


def spy_select(loop: EventLoop) -> list[Turn]:
    """Record every select() of the loop: its timeout, how long it slept, which fds it returned."""
    turns: list[Turn] = []
    real = loop._selector.select

    def select(timeout: float | None = None) -> Any:
        start = time.monotonic()
        events = real(timeout)
        turns.append(Turn(timeout, time.monotonic() - start, [key.fd for key, _ in events]))
        return events

    loop._selector.select = select  # type: ignore[method-assign]
    return turns


def watched_fds(loop: EventLoop) -> set[int]:
    return {key.fd for key in loop._selector.get_map().values()}


def new_threads(before: set[int | None]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]


def settled(pool: ThreadPool, timeout: float = 5.0) -> bool:
    """Wait until every worker of pool is back asleep on the pool's condition (True), at most timeout s.

    A worker that sleeps there has posted its last job: what it wrote to the wake-up fd is
    written. Waiting for that, not for a fixed time, keeps the tests right on a busy machine.
    (It looks at the Condition's waiters, a CPython detail: a pool that waits some other way
    just gets half a second.)
    """
    waiters = getattr(pool._work_ready, "_waiters", None)
    if waiters is None:
        time.sleep(0.5)
        return False
    return proc.wait_until(lambda: len(waiters) >= pool.workers and pool.queued() == 0, timeout)


def pending_writes(fd: int) -> tuple[int, str]:
    """What the workers wrote to the loop's wake-up fd and the loop has not read yet, without reading it.

    An eventfd shows its counter in /proc/self/fdinfo (eventfd-count, in hex): the sum of the
    writes since the last read, so N writes of 1 show as N. A pipe holds the bytes written
    (FIONREAD counts them). Returns the number and its unit.
    """
    info = proc.fdinfo(os.getpid(), fd)
    if "eventfd-count" in info:
        return int(info["eventfd-count"], 16), "writes of 1 (the eventfd's counter)"
    pending = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, pending)
    return pending[0], "bytes in the pipe"


def shutdown_within(pool: ThreadPool, seconds: float) -> bool:
    """pool.shutdown(wait=True), but give up after `seconds` (True if it returned)."""
    helper = threading.Thread(target=pool.shutdown, daemon=True)
    helper.start()
    helper.join(seconds)
    return not helper.is_alive()


@pytest.fixture
def pool(loop: EventLoop) -> Iterator[ThreadPool]:
    """Two workers. Shut down at the end, without ever hanging the grader."""
    p = ThreadPool(workers=2)
    yield p
    shutdown_within(p, 5)
