"""kernaio under faults: nothing lost, nothing written that was cancelled, nothing hung.

Each test reproduces what an adversarial audit found (before the fix it failed):
a cancelled queued write that still reached the disk, a File used from two event loops,
KeyboardInterrupt in the middle of the loop, thousands of loops never closed, and the
kernel's AIO events used up (fs.aio-max-nr).
"""
from __future__ import annotations

import asyncio
import errno
import gc
import linecache
import os
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import kernaio
from kernaio import _engine

BLOCK = 4096


def test_a_cancelled_queued_write_never_reaches_the_disk(scratch: Path, backend: str) -> None:
    """Eight writes queued in one iteration, seven cancelled before the flush: only one lands."""
    scratch.write_bytes(bytes(8 * BLOCK))

    async def main() -> None:
        async with kernaio.open(scratch, "r+b", backend=backend) as f:
            block = kernaio.aligned_buffer(BLOCK)
            block[:] = b"A" * BLOCK
            tasks = [asyncio.create_task(f.write(block, offset=i * BLOCK)) for i in range(8)]
            await asyncio.sleep(0)          # the tasks run: eight requests queued, the flush not yet run
            assert len(_engine.for_running_loop(backend).queue) == 8
            for task in tasks[1:]:
                task.cancel()
            assert await tasks[0] == BLOCK
            for task in tasks[1:]:
                with pytest.raises(asyncio.CancelledError):
                    await task

    asyncio.run(main())
    landed = [i for i in range(8) if scratch.read_bytes()[i * BLOCK:(i + 1) * BLOCK] != bytes(BLOCK)]
    assert landed == [0], f"blocks {landed} were written, yet only block 0's write was not cancelled"


def test_a_file_belongs_to_the_loop_that_uses_it(data: tuple[Path, bytes], backend: str) -> None:
    """Another loop may not use a File while its loop is open (its queued requests live in that
    loop's engine); once that loop is closed, another loop may take the file over."""
    path, content = data
    first = asyncio.new_event_loop()
    f = kernaio.open(path, "rb", backend=backend)
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
                                                                      backend: str) -> None:
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
        f = kernaio.open(scratch, "r+b", backend=backend)
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


def test_keyboard_interrupt_anywhere_in_the_engine_loses_nothing(data: tuple[Path, bytes], backend: str) -> None:
    """KeyboardInterrupt at every line the engine runs, one place per try (a notebook's Ctrl-C
    can land on any of them; see InterruptAt for the one it cannot guard), then the loop
    again: every read ends with the right bytes, and nothing stays queued or in flight."""
    path, content = data
    f = kernaio.open(path, "rb", backend=backend)
    loop = asyncio.new_event_loop()

    async def readers() -> list[bytes | BaseException]:
        # A Ctrl-C that lands in start() is raised in the caller's own task: that read ends
        # with KeyboardInterrupt, as any code of the caller would. The others must not care.
        return await asyncio.gather(*(f.read(BLOCK, (i * 13 % 256) * BLOCK) for i in range(24)),
                                    return_exceptions=True)

    def once(trace: InterruptAt | None = None) -> tuple[list[bytes | BaseException] | None, int]:
        task = loop.create_task(readers())
        interrupts = 0
        sys.settrace(trace)
        try:
            while not task.done() and interrupts < 3:
                try:
                    loop.run_until_complete(asyncio.wait([task], timeout=5))
                    break
                except KeyboardInterrupt:
                    interrupts += 1        # what a notebook does: run the loop again
        finally:
            sys.settrace(None)
        if not task.done() or task.cancelled() or task.exception() is not None:
            task.cancel()
            return None, interrupts
        return task.result(), interrupts

    try:
        counter = InterruptAt(0)           # counts, never fires
        once(counter)
        lines = counter.seen
        assert lines > 50, f"the engine ran only {lines} lines: is the trace hooked?"
        engine = _engine.for_loop(loop, backend)
        for n in range(1, lines + 1):
            trace = InterruptAt(n)
            result, _ = once(trace)
            if not trace.fired:
                continue
            where = f"KeyboardInterrupt in {trace.where} of _engine.py (line event {n} of {lines})"
            assert result is not None, (f"{where}: the reads did not all end in 5 s ({len(engine.queue)} queued, "
                                        f"{engine.ctx.in_flight} in flight, flush pending {engine._flush_pending})")
            wrong = [i for i, got in enumerate(result) if not isinstance(got, KeyboardInterrupt)
                     and got != content[(i * 13 % 256) * BLOCK:(i * 13 % 256 + 1) * BLOCK]]
            assert not wrong and sum(isinstance(got, KeyboardInterrupt) for got in result) <= 1, (where, wrong)
            for _ in range(100):            # a read whose caller was interrupted may still be in flight
                if engine.ctx.in_flight == 0:
                    break
                loop.run_until_complete(asyncio.sleep(0.01))
            assert engine.ctx.in_flight == 0 and not engine.queue and not engine._in_hand, where
    finally:
        loop.run_until_complete(f.close())
        loop.close()


def test_thousands_of_loops_never_closed(data: tuple[Path, bytes]) -> None:
    """Loops dropped without close(), each with its own file: their engines are swept and
    finalized while new ones are made; the sweep must survive a finalizer running in its middle."""
    path, content = data

    async def one_read(backend: str) -> bytes:
        async with kernaio.open(path, "rb", backend=backend) as f:
            return await f.read(BLOCK)

    backends = ["aio"]
    try:
        asyncio.run(one_read("io_uring"))
        backends.append("io_uring")
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
