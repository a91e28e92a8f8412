"""kernaio under faults: nothing lost, nothing written that was cancelled, nothing hung.

Each test reproduces what an adversarial audit found (before the fix it failed):
a cancelled queued write that still reached the disk, a File used from two event loops,
KeyboardInterrupt in the middle of the loop, thousands of loops never closed, and the
kernel's AIO events used up (fs.aio-max-nr).
"""
from __future__ import annotations

import asyncio
import contextvars
import errno
import gc
import linecache
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVarTuple

Ts = TypeVarTuple("Ts")

import pytest

import kernaio
from kernaio import _engine, _kernaio

BLOCK = 4096


def test_a_cancelled_queued_write_never_reaches_the_disk(scratch: Path, backend: str, sqpoll: bool) -> None:
    """Eight writes queued in one iteration, seven cancelled before the flush: only one lands."""
    scratch.write_bytes(bytes(8 * BLOCK))

    async def main() -> None:
        async with kernaio.open(scratch, "r+b", backend=backend, sqpoll=sqpoll) as f:
            block = kernaio.aligned_buffer(BLOCK)
            block[:] = b"A" * BLOCK
            tasks = [asyncio.create_task(f.write(block, offset=i * BLOCK)) for i in range(8)]
            await asyncio.sleep(0)          # the tasks run: eight requests queued, the flush not yet run
            assert len(_engine.for_running_loop(backend, sqpoll=sqpoll).queue) == 8
            for task in tasks[1:]:
                task.cancel()
            assert await tasks[0] == BLOCK
            for task in tasks[1:]:
                with pytest.raises(asyncio.CancelledError):
                    await task

    asyncio.run(main())
    landed = [i for i in range(8) if scratch.read_bytes()[i * BLOCK:(i + 1) * BLOCK] != bytes(BLOCK)]
    assert landed == [0], f"blocks {landed} were written, yet only block 0's write was not cancelled"


def test_a_file_belongs_to_the_loop_that_uses_it(data: tuple[Path, bytes], backend: str, sqpoll: bool) -> None:
    """Another loop may not use a File while its loop is open (its queued requests live in that
    loop's engine); once that loop is closed, another loop may take the file over."""
    path, content = data
    first = asyncio.new_event_loop()
    f = kernaio.open(path, "rb", backend=backend, sqpoll=sqpoll)
    try:
        assert first.run_until_complete(f.read(BLOCK)) == content[:BLOCK]

        async def elsewhere() -> bytes:
            return await f.read(BLOCK)

        with pytest.raises(RuntimeError, match="belongs to another event loop"):
            asyncio.run(elsewhere())
        with pytest.raises(RuntimeError, match="belongs to another event loop"):
            asyncio.run(f.close())
        first.close()
        assert asyncio.run(elsewhere()) == content[:BLOCK], "its loop is closed: another may use it"
    finally:
        if not first.is_closed():
            first.close()
        asyncio.run(f.close())


def test_a_file_used_by_two_threads_never_writes_through_a_reused_fd(scratch: Path, data_dir: Path,
                                                                      backend: str, sqpoll: bool) -> None:
    """The audit's case: writes from a second thread's loop, the file closed by the first, the
    fd number then reused by another file. The second thread is refused; nothing else is written."""
    scratch.write_bytes(bytes(16 * BLOCK))
    bystander = data_dir / f"bystander-{os.getpid()}"
    bystander.write_bytes(bytes(16 * BLOCK))
    refused: list[BaseException] = []

    async def owner(f: kernaio.File) -> None:
        block = kernaio.aligned_buffer(BLOCK)
        await f.write(block, offset=0)

    def other_thread(f: kernaio.File) -> None:
        async def writes() -> None:
            block = kernaio.aligned_buffer(BLOCK)
            block[:] = b"B" * BLOCK
            await asyncio.gather(*(f.write(block, offset=i * BLOCK) for i in range(16)))
        try:
            asyncio.run(writes())
        except RuntimeError as err:
            refused.append(err)

    try:
        loop = asyncio.new_event_loop()
        f = kernaio.open(scratch, "r+b", backend=backend, sqpoll=sqpoll)
        loop.run_until_complete(owner(f))
        thread = threading.Thread(target=other_thread, args=(f,))
        thread.start()
        thread.join(10)
        loop.run_until_complete(f.close())
        fd = os.open(bystander, os.O_RDWR)   # may take the closed file's fd number
        os.close(fd)
        loop.close()
        assert refused and "belongs to another event loop" in str(refused[0]), refused
        assert bystander.read_bytes() == bytes(16 * BLOCK), "another file was written"
    finally:
        bystander.unlink(missing_ok=True)


class InterruptAt:
    """A trace function that raises KeyboardInterrupt at the n-th line the engine runs
    (kernaio/_engine.py), as a Ctrl-C in a notebook can: the same place every time.

    The first line of a call that comes from outside the engine (asyncio running a callback,
    a caller's start()) is not counted: an exception there is raised before any code of the
    function can guard against it, exactly like one that lands in asyncio's own bookkeeping
    and loses the callback (Handle._run). No Python library can repair that; asyncio.run
    turns Ctrl-C into a cancellation for this reason."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.fired, self.where = n, 0, False, ""
        self.entries: set[int] = set()      # frames (by id) whose first line is not counted

    def __call__(self, frame: FrameType, event: str, arg: Any) -> InterruptAt | None:
        if frame.f_code.co_filename != _engine.__file__:
            return None                     # not the engine: no line events from this frame
        if event == "call":
            if frame.f_back is None or frame.f_back.f_code.co_filename != _engine.__file__:
                self.entries.add(id(frame))
        elif event == "line" and id(frame) in self.entries:
            self.entries.discard(id(frame))
        elif event == "line" and linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip() == "try:":
            # A bare try: line is a NOP that Python leaves outside every handler; a real signal
            # is acted on only at a call, a loop's jump back or a function's start, never there.
            pass
        elif event == "line" and not self.fired:
            self.seen += 1
            if self.seen == self.n:
                self.fired, self.where = True, f"{frame.f_code.co_name}, line {frame.f_lineno}"
                raise KeyboardInterrupt
        return self


class Readers:
    """24 reads of one file made together, on one loop, run again and again: each run until
    they are all done, running the loop again after a KeyboardInterrupt (what a notebook
    does), then checked: every read ends with the right bytes (at most one with the
    KeyboardInterrupt itself: a Ctrl-C that lands in a read's own start is raised in its
    caller's task), and nothing stays queued or in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path, content: bytes, backend: str,
                 sqpoll: bool) -> None:
        self.loop, self.content, self.backend, self.sqpoll = loop, content, backend, sqpoll
        self.f = kernaio.open(path, "rb", backend=backend, sqpoll=sqpoll)

    async def reads(self) -> list[bytes | BaseException]:
        return await asyncio.gather(*(self.f.read(BLOCK, (i * 13 % 256) * BLOCK) for i in range(24)),
                                    return_exceptions=True)

    def run(self, trace: Any = None) -> list[bytes | BaseException] | None:
        """One run (under sys.settrace(trace) if given); None if the reads did not all end in 5 s."""
        task = self.loop.create_task(self.reads())
        task.add_done_callback(lambda _: self.loop.stop())
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            self.loop.stop()
        timer = self.loop.call_later(5, expire)
        interrupts = 0
        sys.settrace(trace)
        try:
            while not task.done() and interrupts < 3 and not expired:
                try:
                    self.loop.run_forever()
                    break
                except KeyboardInterrupt:
                    interrupts += 1
        finally:
            sys.settrace(None)
            timer.cancel()
        if not task.done() or task.cancelled() or task.exception() is not None:
            task.cancel()
            return None
        return task.result()

    def check(self, result: list[bytes | BaseException] | None, where: str) -> None:
        engine = _engine.for_loop(self.loop, self.backend, sqpoll=self.sqpoll)
        assert result is not None, (f"{where}: the reads did not all end in 5 s ({len(engine.queue)} queued, "
                                    f"{engine.ctx.in_flight} in flight, flush pending {engine._flush_pending})")
        wrong = [i for i, got in enumerate(result) if not isinstance(got, KeyboardInterrupt)
                 and got != self.content[(i * 13 % 256) * BLOCK:(i * 13 % 256 + 1) * BLOCK]]
        assert not wrong and sum(isinstance(got, KeyboardInterrupt) for got in result) <= 1, (where, wrong)
        for _ in range(100):            # a read whose caller was interrupted may still be in flight
            if engine.ctx.in_flight == 0:
                break
            self.loop.run_until_complete(asyncio.sleep(0.01))
        assert engine.ctx.in_flight == 0 and not engine.queue and not getattr(engine, "_in_hand", ()), where

    def close(self) -> None:
        self.loop.run_until_complete(self.f.close())
        self.loop.close()


def test_keyboard_interrupt_anywhere_in_the_engine_loses_nothing(data: tuple[Path, bytes], backend: str,
                                                                 sqpoll: bool, engine: str) -> None:
    """KeyboardInterrupt at every line the Python engine runs, one place per try (a notebook's
    Ctrl-C can land on any of them; see InterruptAt for the one it cannot guard), then the
    loop again: nothing lost (Readers)."""
    if engine == "c":
        pytest.skip("the C engine runs no line of _engine.py per request: no Python line to interrupt between "
                    "its steps; test_keyboard_interrupt_in_every_call_to_the_loop_loses_nothing covers the calls "
                    "into Python it makes")
    readers = Readers(asyncio.new_event_loop(), *data, backend, sqpoll)
    try:
        counter = InterruptAt(0)           # counts, never fires
        readers.run(counter)
        lines = counter.seen
        assert lines > 50, f"the engine ran only {lines} lines: is the trace hooked?"
        for n in range(1, lines + 1):
            trace = InterruptAt(n)
            result = readers.run(trace)
            if trace.fired:
                readers.check(result, f"KeyboardInterrupt in {trace.where} of _engine.py (line event {n} of "
                                      f"{lines})")
    finally:
        readers.close()


class InterruptingLoop(asyncio.SelectorEventLoop):
    """A loop that raises KeyboardInterrupt at the n-th point of the calls kernaio makes to it:
    just before or just after each call_soon and call_later of one of kernaio's own callbacks,
    and each create_future (what a Ctrl-C on the first or the last line of that asyncio method
    does: the call did nothing, or it took effect and the caller sees the interrupt anyway).
    A callback that is not kernaio's (a task's wake-up) is never interrupted: losing it is
    asyncio's own bookkeeping, which no library can guard (see InterruptAt)."""

    def arm(self, n: int) -> None:
        self.n, self.points, self.where = n, 0, ""

    def _point(self, what: str) -> None:
        self.points += 1
        if self.points == getattr(self, "n", 0):
            self.where = what
            raise KeyboardInterrupt

    def _around(self, what: str, callback: Any, call: Any) -> Any:
        ours = isinstance(getattr(callback, "__self__", None), (_engine.Engine, _kernaio.Engine))
        if ours:
            self._point(f"before {what}({callback.__name__})")
        done = call()
        if ours:
            self._point(f"after {what}({callback.__name__})")
        return done

    def call_soon(self, callback: Callable[[*Ts], object], *args: *Ts,
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        handle: asyncio.Handle = self._around("call_soon", callback,
                                              lambda: super(InterruptingLoop, self).call_soon(callback, *args,
                                                                                               context=context))
        return handle

    def call_later(self, delay: float, callback: Callable[[*Ts], object], *args: *Ts,
                   context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        handle: asyncio.TimerHandle = self._around(
            "call_later", callback, lambda: super(InterruptingLoop, self).call_later(delay, callback, *args,
                                                                                     context=context))
        return handle

    def create_future(self) -> asyncio.Future[Any]:
        self._point("before create_future")
        future = super().create_future()
        self._point("after create_future")
        return future


def test_keyboard_interrupt_in_every_call_to_the_loop_loses_nothing(data: tuple[Path, bytes], backend: str,
                                                                     sqpoll: bool) -> None:
    """On both engines: KeyboardInterrupt before and after each call kernaio makes into the
    loop's Python code (the only places a Ctrl-C can reach the C engine), one per try, then
    the loop again: nothing lost (Readers). The readers' run uses no create_future of its own."""
    loop = InterruptingLoop()
    readers = Readers(loop, *data, backend, sqpoll)
    try:
        loop.arm(0)
        readers.run()
        points = loop.points
        assert points > 24, f"only {points} calls into the loop for 24 reads: is the loop's create_future used?"
        for n in range(1, points + 1):
            loop.arm(n)
            result = readers.run()
            if loop.where:
                readers.check(result, f"KeyboardInterrupt {loop.where} (point {n} of {points})")
    finally:
        readers.close()


def test_thousands_of_loops_never_closed(data: tuple[Path, bytes]) -> None:
    """Loops dropped without close(), each with its own file: their engines are swept and
    finalized while new ones are made; the sweep must survive a finalizer running in its middle."""
    path, content = data

    async def one_read(backend: tuple[str, bool]) -> bytes:
        async with kernaio.open(path, "rb", backend=backend[0], sqpoll=backend[1]) as f:
            return await f.read(BLOCK)

    backends = [("aio", False)]
    try:
        asyncio.run(one_read(("io_uring", True)))
        backends += [("io_uring", False), ("io_uring", True)]
    except OSError:
        pass                      # io_uring blocked here: kernel AIO alone
    for i in range(2500):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(one_read(backends[i % len(backends)])) == content[:BLOCK]
        del loop                  # never closed: collected some day, its engine finalized then
        if i % 97 == 0:
            gc.collect()


def test_used_up_aio_events_say_what_ran_out_and_how_to_raise_it(data: tuple[Path, bytes]) -> None:
    """fs.aio-max-nr lowered to what is in use (restored at once): a new context cannot be made,
    and the error names the sysctl, what this process holds and the command that raises it."""
    limit = Path("/proc/sys/fs/aio-max-nr")
    if not os.access(limit, os.W_OK):
        pytest.skip("changing fs.aio-max-nr needs root")
    path, _ = data
    before = limit.read_text()
    f = kernaio.open(path, "rb")
    _engine.close_all()            # no idle context to reuse: the next loop needs a new one
    try:
        limit.write_text(Path("/proc/sys/fs/aio-nr").read_text())
        with pytest.raises(OSError) as caught:
            asyncio.run(f.read(BLOCK))
    finally:
        limit.write_text(before)
        asyncio.run(f.close())
    err = caught.value
    assert err.errno == errno.EAGAIN
    assert "fs.aio-max-nr" in str(err) and "sysctl" in str(err) and "this process holds" in str(err), str(err)
