"""kernaio's lifetimes: cancellation, closing with requests in flight, one context per loop, fork, leaks."""
from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
from pathlib import Path

import pytest

import kernaio
from kernaio import _engine


def aio_nr() -> int:
    """Kernel AIO events reserved by every context on the machine (/proc/sys/fs/aio-nr)."""
    return int(Path("/proc/sys/fs/aio-nr").read_text())


def test_cancelled_read_keeps_its_buffer_until_the_kernel_is_done(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with kernaio.open(path, "rb") as f:
            engine = _engine.for_running_loop()
            # Hold back completions (stop watching the eventfd) so the test decides when they land.
            loop.remove_reader(engine.ctx.fileno())
            buf = kernaio.aligned_buffer(65536)
            task = asyncio.create_task(f.readinto(buf, offset=0))
            while engine.ctx.in_flight == 0:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The task is gone, the kernel may still be writing: the buffer must stay pinned.
            with pytest.raises(BufferError):
                buf.close()
            loop.add_reader(engine.ctx.fileno(), engine._on_completions)
            while engine.ctx.in_flight:
                await asyncio.sleep(0.001)
            assert buf[:] == content[:65536], "the kernel wrote into the buffer we kept alive"
            buf.close()  # released once the completion arrived
            # A request cancelled before its flush never reaches the kernel.
            calls = engine.submit_calls
            early = asyncio.create_task(f.read(4096))
            await asyncio.sleep(0)
            early.cancel()
            with pytest.raises(asyncio.CancelledError):
                await early
            await asyncio.sleep(0.01)
            assert engine.submit_calls == calls and not engine.queue

    asyncio.run(main())


def test_close_waits_for_requests_in_flight(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        f = kernaio.open(path, "rb")
        engine = _engine.for_running_loop()
        tasks = [asyncio.create_task(f.read(4096, offset=i * 4096)) for i in range(32)]
        while engine.ctx.in_flight == 0 and not all(t.done() for t in tasks):
            await asyncio.sleep(0)
        await f.close()
        assert engine.ctx.in_flight_for(f) == 0 and engine.ctx.in_flight == 0, "close() returned with requests in flight"
        await asyncio.sleep(0)          # the tasks resume from their (already resolved) futures
        assert [t.result() for t in tasks] == [content[i * 4096:(i + 1) * 4096] for i in range(32)]
        # Requests still queued (not yet submitted) when the file closes fail: their fd is gone.
        g = kernaio.open(path, "rb")
        queued = [asyncio.create_task(g.read(4096)) for _ in range(4)]
        await asyncio.sleep(0)          # the tasks run and queue; the flush has not run yet
        await g.close()
        for t in queued:
            with pytest.raises(ValueError, match="closed before"):
                await t

    asyncio.run(main())


def test_close_waits_for_its_own_requests_only_cancelled_ones_too(data: tuple[Path, bytes]) -> None:
    """close() waits while the kernel holds a request of THIS file, even one whose caller was
    cancelled (the kernel still writes into its memory); another file's requests are not its
    business. Completions are held back (the eventfd unwatched) to make "in flight" last."""
    path, _ = data

    async def main() -> None:
        loop = asyncio.get_running_loop()
        f, other, idle = (kernaio.open(path, "rb") for _ in range(3))
        engine = _engine.for_running_loop()
        await idle.read(4096)               # idle's engine is this loop's; nothing of it in flight

        def hold_completions() -> None:
            loop.remove_reader(engine.ctx.fileno())

        def release_completions() -> None:
            loop.add_reader(engine.ctx.fileno(), engine._on_completions)

        hold_completions()
        mine = [asyncio.create_task(f.read(4096, offset=i * 4096)) for i in range(3)]
        theirs = asyncio.create_task(other.read(4096))
        while engine.ctx.in_flight < 4:
            await asyncio.sleep(0)
        assert [engine.ctx.in_flight_for(x) for x in (f, other, idle)] == [3, 1, 0]
        await asyncio.wait_for(idle.close(), 1)     # others' requests in flight: no wait
        mine[0].cancel()
        closing = asyncio.create_task(f.close())
        await asyncio.sleep(0.05)
        assert not closing.done(), "close() returned while the kernel held its requests"
        release_completions()
        await asyncio.wait_for(closing, 5)
        assert engine.ctx.in_flight_for(f) == 0 and mine[0].cancelled()
        assert [len(await t) for t in mine[1:]] == [4096, 4096]
        assert len(await theirs) == 4096
        await other.close()

    asyncio.run(main())


def test_closing_the_loop_with_requests_in_flight(data: tuple[Path, bytes]) -> None:
    path, _ = data
    tasks: list[asyncio.Task[bytes]] = []
    engines: list[_engine.AnyEngine] = []

    async def start() -> None:
        f = kernaio.open(path, "rb")
        engine = _engine.for_running_loop()
        engines.append(engine)
        # Completions are not reaped (the eventfd is not watched): they stay "in flight".
        asyncio.get_running_loop().remove_reader(engine.ctx.fileno())
        tasks.extend(asyncio.create_task(f.read(4096, offset=i * 4096)) for i in range(16))
        while engine.ctx.in_flight < 16:
            await asyncio.sleep(0)
        f._closed = True               # the tasks still use the fd; the test closes it below
        engines.append(engine)
        os.close(f._fd)                # safe: the kernel holds its own reference to the file

    asyncio.run(start())               # returns with 16 tasks pending: asyncio.run cancels them, closes the loop
    assert all(t.cancelled() for t in tasks)
    engine = engines[0]
    assert engine.ctx.in_flight == 16 and not engine.ctx.closed
    asyncio.run(asyncio.sleep(0))      # a new loop: kernaio is not used yet

    async def first_use() -> None:  # the first request on a new loop sweeps the closed one
        async with kernaio.open(path, "rb") as g:
            await g.read(4096)

    asyncio.run(first_use())
    assert engine.closed and engine.ctx.closed, "requests were in flight: the context must be destroyed"
    assert engine.ctx.in_flight == 0


def test_a_thousand_loops_do_not_leak_contexts(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def one() -> bytes:
        async with kernaio.open(path, "rb") as f:
            return await f.read(4096)

    before = aio_nr()
    for _ in range(1000):
        assert asyncio.run(one()) == content[:4096]
    # One live context (plus the other tests' and helpers' on this machine): never 1,000.
    grown = aio_nr() - before
    assert grown < 20 * _engine.CAPACITY * 2, f"aio-nr grew by {grown} over 1,000 loops: contexts leak"


def test_forked_child_makes_its_own_context(data: tuple[Path, bytes], backend: str, sqpoll: bool) -> None:
    path, content = data

    async def read() -> tuple[bytes, int]:
        async with kernaio.open(path, "rb", backend=backend, sqpoll=sqpoll) as f:
            return await f.read(4096), _engine.for_running_loop(backend, sqpoll=sqpoll).ctx.pid

    loop = asyncio.new_event_loop()
    try:
        data0, parent_pid = loop.run_until_complete(read())
        parent_ctx = _engine.for_loop(loop, backend, sqpoll=sqpoll).ctx
        pid = os.fork()
        if pid == 0:                   # the child: report through the exit status only
            status = 1
            try:
                try:
                    parent_ctx.reap()
                except RuntimeError:
                    status = 0         # the parent's context (or ring) refuses to serve the child
                got, ctx_pid = asyncio.run(read())
                if got != content[:4096] or ctx_pid != os.getpid():
                    status = 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the fork()ed child could not use kernaio on its own"
        assert data0 == content[:4096] and parent_pid == os.getpid()
        assert loop.run_until_complete(read())[0] == content[:4096]   # the parent's is still fine
    finally:
        loop.close()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# `make asan` runs a million (the suite under AddressSanitizer); make test 100,000.
LEAK_READS = int(os.environ.get("KERNAIO_LEAK_READS", "100000"))


def test_no_leak_over_many_reads(data: tuple[Path, bytes], backend: str, sqpoll: bool) -> None:
    path, _ = data
    buf = kernaio.aligned_buffer(4096)

    async def reads(f: kernaio.File, n: int) -> None:
        for chunk in range(n // 500):
            await asyncio.gather(*(f.read(4096, offset=(i % 256) * 4096) for i in range(250)),
                                 *(f.readinto(buf, offset=(i % 256) * 4096) for i in range(250)))

    async def main() -> tuple[int, int]:
        async with kernaio.open(path, "rb", backend=backend, sqpoll=sqpoll) as f:
            await reads(f, 20_000)     # warm up: caches, free lists
            gc.collect()
            start = rss_kib()
            await reads(f, LEAK_READS)
            gc.collect()
            return start, rss_kib()

    start, end = asyncio.run(main())
    assert end - start < 4096, f"RSS grew by {end - start} KiB over {LEAK_READS:,} reads: something leaks"
    assert sys.getrefcount(buf) == 2, "the buffer is still referenced after every request completed"


def test_works_with_uvloop(data: tuple[Path, bytes], backend: str, sqpoll: bool) -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed in this venv")
    path, content = data

    async def main() -> bytes:
        async with kernaio.open(path, "rb", backend=backend, sqpoll=sqpoll) as f:
            parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(8)))
            return b"".join(parts)

    assert uvloop.run(main()) == content[:8 * 4096]
