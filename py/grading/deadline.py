"""A watchdog for graders that run a learner's event loop in the test's own process.

    with deadline(3, "run_until_complete"):
        loop.run_until_complete(main())

A helper thread sends SIGUSR1 to the test's thread after `seconds`; the handler raises
LoopStuck, and Python lets that exception out of a blocked select()/epoll_wait (PEP 475).
So a loop that sleeps forever, spins, or waits for a wake-up that never comes fails in
seconds with a message, instead of at pytest's hard timeout. (SIGUSR1, so as not to
interfere with pytest-timeout's SIGALRM.) Just before, the helper looks at where each
thread of the process waits (the loop's asleep in epoll_wait, or running; the workers on a
lock...), and the message says it: what was seen, not a guess.
"""
from __future__ import annotations

import asyncio
import contextlib
import linecache
import os
import signal
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xray.proc import where_they_wait


class LoopStuck(Exception):
    """The loop under test did not finish in time."""


def tasks_waiting() -> str:
    """Each other task of the running asyncio loop, and where it waits: its chain of awaits, and the
    line of the deepest one outside Python's own library."""
    stdlib = sysconfig.get_paths()["stdlib"]
    lines = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        coro: Any = task.get_coro()
        frames = []
        while coro is not None:   # down the chain of awaits: coroutines awaiting coroutines
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            frames.append(frame)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        chain = " -> ".join(f"{f.f_code.co_name} ({Path(f.f_code.co_filename).name}:{f.f_lineno})" for f in frames)
        own = [f for f in frames if not f.f_code.co_filename.startswith(stdlib)]
        code = linecache.getline(own[-1].f_code.co_filename, own[-1].f_lineno).strip() if own else ""
        lines.append(f"    {task.get_name()}: {chain or 'finishing'}" + (f": `{code}`" if code else ""))
    return "\n".join(lines) or "    (no other task)"


def where_threads_wait(loop_thread: int) -> str:
    """Where each thread of this process waits, the loop's (a native thread id) named so; the caller's
    own thread left out."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    names[loop_thread] = "the loop's thread"
    return where_they_wait([os.getpid()], threads_each=12, skip=[threading.get_native_id()], names=names)


@contextlib.contextmanager
def deadline(seconds: float, what: str, advice: str = "") -> Iterator[None]:
    """Interrupt the block with LoopStuck after `seconds`; `advice` ends the message."""
    seen: list[str] = []
    loop_thread = threading.get_native_id()

    def on_signal(signum: int, frame: Any) -> None:
        raise LoopStuck(f"{what}: still not done after {seconds:g} s" + (f". {advice}" if advice else "")
                        + (f"\nWhere the threads were then:\n{seen[0]}" if seen else ""))

    def expire(target: int) -> None:
        seen.append(where_threads_wait(loop_thread))
        signal.pthread_kill(target, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, on_signal)
    timer = threading.Timer(seconds, expire, (threading.get_ident(),))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
