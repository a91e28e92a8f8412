"""Lab 6's grader helpers: run a coroutine on a fresh loop with a deadline, and trace a reader.

The tests import `kernaio` in their own process: the plugin puts the implementation's py/
first on sys.path, so it is the learner's package (with their _kernaio.c compiled in place
by the grader) or the reference. A coroutine that waits for a completion that never comes
fails after a few seconds with advice, never at pytest's hard timeout.
"""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from grading.plugin import Impl
from grading.programs import DataFile
from xray import strace
from xray.doctor import check_kernel_aio, check_o_direct, require

T = TypeVar("T")
STUCK = ("no completion arrived: does Engine.start schedule ONE _flush with call_soon, does _flush "
         "call ctx.submit, and does _on_completions reap and complete each request?")


def require_kaio() -> None:
    """Raise xray.Unavailable (the test is skipped, saying why) without kernel AIO or O_DIRECT here."""
    require(check_kernel_aio, check_o_direct)


def run(main: Callable[[], Awaitable[T]], seconds: float = 10, *, uvloop: bool = False) -> T:
    """Run main() on a new event loop (uvloop's if asked); fail with advice after `seconds`."""
    require_kaio()

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(main(), seconds)
        except TimeoutError:
            raise AssertionError(f"still waiting after {seconds:g} s: {STUCK}") from None

    if uvloop:
        import uvloop as uv
        return uv.run(bounded())
    return asyncio.run(bounded())


READER = Path(__file__).with_name("lab6_reader.py")


def traced_reader(impl: Impl, data: DataFile, count: int) -> strace.Trace:
    """lab6_reader.py under strace -f: `count` reads of 4 KiB made together (one gather)."""
    require_kaio()
    argv = [sys.executable, str(READER), data.name, str(count)]
    tr = strace.run(argv, env=impl.env(), cwd=data.dir, timeout=60,
                    trace="io_setup,io_submit,io_getevents,epoll_wait,read,eventfd2,clone,clone3")
    assert tr.returncode == 0, f"lab6_reader.py failed (exit {tr.returncode}):\n{tr.stderr[-3000:]}"
    return tr
