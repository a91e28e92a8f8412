"""A watchdog for graders that run a learner's event loop in the test's own process.

    with deadline(3, "run_until_complete"):
        loop.run_until_complete(main())

A helper thread sends SIGUSR1 to the test's thread after `seconds`; the handler raises
LoopStuck, and Python lets that exception out of a blocked select()/epoll_wait (PEP 475).
So a loop that sleeps forever, spins, or waits for a wake-up that never comes fails in
seconds with a message, instead of at pytest's hard timeout. (SIGUSR1, so as not to
interfere with pytest-timeout's SIGALRM.)
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class LoopStuck(Exception):
    """The loop under test did not finish in time."""


@contextlib.contextmanager
def deadline(seconds: float, what: str, advice: str = "") -> Iterator[None]:
    """Interrupt the block with LoopStuck after `seconds`; `advice` ends the message."""
    def on_signal(signum: int, frame: Any) -> None:
        raise LoopStuck(f"{what}: still not done after {seconds:g} s" + (f". {advice}" if advice else ""))

    previous = signal.signal(signal.SIGUSR1, on_signal)
    timer = threading.Timer(seconds, signal.pthread_kill, (threading.get_ident(), signal.SIGUSR1))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
