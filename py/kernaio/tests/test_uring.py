"""kernaio on backend="io_uring": the same behaviours as on kernel AIO, one io_uring_enter per batch, no user thread."""
from __future__ import annotations

import asyncio
import errno
import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import kernaio
from kernaio import _engine, _kernaio
from paths import ROOT
from xray import Unavailable, doctor, strace

ROOT_PY = ROOT / "py"   # what a traced child needs on PYTHONPATH
# First line of the scripts run under strace by hand: a hang ends the child, not the test run.
ALARM = "import signal; signal.alarm(20)\n"


# (fork safety, uvloop and the leak test run on both backends: test_lifecycle.py.)


@pytest.fixture(autouse=True)
def io_uring_works() -> None:
    """Skip (saying why and what to do) where io_uring is blocked: never a silent pass."""
    try:
        doctor.require(doctor.check_io_uring)
    except Unavailable as why:
        pytest.skip(str(why))


def uopen(path: Path, mode: str = "rb", *, direct: bool = True, sqpoll: bool = False) -> kernaio.File:
    return kernaio.open(path, mode, direct=direct, backend="io_uring", sqpoll=sqpoll)


def test_read_readinto_and_end_of_file(data: tuple[Path, bytes], sqpoll: bool) -> None:
    path, content = data

    async def main() -> None:
        async with uopen(path, sqpoll=sqpoll) as f:
            assert f.backend == "io_uring" and "io_uring" in repr(f)
            assert await f.read(4096, offset=8192) == content[8192:12288]
            buf = kernaio.aligned_buffer(8192)
            assert await f.readinto(buf, offset=4096) == 8192 and buf[:] == content[4096:12288]
            assert await f.read(8192, offset=len(content) - 4096) == content[-4096:]
            assert await f.read(4096, offset=len(content)) == b""
            parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(len(content) // 4096)))
            assert b"".join(parts) == content
            ctx = _engine.for_running_loop("io_uring", sqpoll=sqpoll).ctx
            assert isinstance(ctx, _kernaio.UringContext) and ctx.sqpoll == sqpoll

    asyncio.run(main())


def test_write_fsync_and_read_back(scratch: Path) -> None:
    async def main() -> None:
        async with uopen(scratch, "w+b") as f:
            assert await f.write(b"a" * 4096, offset=0) == 4096          # bytes: bounced to aligned memory
            buf = kernaio.aligned_buffer(4096)
            buf[:] = b"b" * 4096
            assert await f.write(buf, offset=4096) == 4096
            await f.fsync()
            assert await f.read(8192) == b"a" * 4096 + b"b" * 4096

    asyncio.run(main())
    assert scratch.read_bytes() == b"a" * 4096 + b"b" * 4096


def test_fsync_runs_on_an_iou_wrk_kernel_thread(scratch: Path) -> None:
    # What io_uring hides: a request that must block (fsync always, buffered I/O that would)
    # is handed to an iou-wrk worker, a kernel thread of THIS process, not made by clone().
    if tuple(int(x) for x in os.uname().release.split(".")[:2]) < (5, 12):
        pytest.skip("before Linux 5.12, io_uring's workers were kernel threads outside the process")

    async def main() -> list[str]:
        async with uopen(scratch, "w+b") as f:
            await f.write(b"x" * 4096)
            await f.fsync()
            return [(t / "comm").read_text().strip() for t in Path("/proc/self/task").iterdir()]

    names = asyncio.run(main())
    assert any(n.startswith("iou-wrk") for n in names), f"no iou-wrk thread after an fsync: {names}"


def test_buffered_reads_take_any_offset(data: tuple[Path, bytes]) -> None:
    path, content = data

    async def main() -> None:
        async with uopen(path, direct=False) as f:
            assert f.alignment.offset == 1
            assert await f.read(100, offset=7) == content[7:107]
            buf = bytearray(33)
            assert await f.readinto(buf, offset=1) == 33 and bytes(buf) == content[1:34]

    asyncio.run(main())


def test_misalignment_is_the_same_value_error(data: tuple[Path, bytes]) -> None:
    path, _ = data

    async def main() -> None:
        async with uopen(path) as f:
            n = f.alignment.offset
            with pytest.raises(ValueError, match=f"offset 100 is not a multiple of {n}"):
                await f.read(4096, offset=100)
            with pytest.raises(ValueError, match=f"length 100 is not a multiple of {n}"):
                await f.read(100)
            with pytest.raises(ValueError, match="memory alignment"):
                await f.readinto(memoryview(kernaio.aligned_buffer(8192))[1:4097])

    asyncio.run(main())


def test_unknown_backend_is_a_value_error(data: tuple[Path, bytes]) -> None:
    with pytest.raises(ValueError, match="backend must be one of 'aio', 'io_uring'"):
        kernaio.open(data[0], "rb", backend="uring")


def test_errors_are_oserrors_with_errno_and_name(data: tuple[Path, bytes]) -> None:
    path, _ = data

    async def main() -> None:
        f = uopen(path)
        await f.read(4096)          # the loop's ring (and its eventfd) exist: the fd number stays free
        os.close(f.fileno())
        with pytest.raises(OSError) as err:
            await f.read(4096)      # io_uring says it in the CQE, not at submit
        assert err.value.errno == errno.EBADF and err.value.filename == str(path)
        f._closed = True

    asyncio.run(main())


def test_one_submit_per_iteration_and_a_queue_beyond_capacity(data: tuple[Path, bytes], sqpoll: bool) -> None:
    path, content = data

    async def main() -> None:
        async with uopen(path, sqpoll=sqpoll) as f:
            engine = _engine.for_running_loop("io_uring", sqpoll=sqpoll)
            calls = engine.submit_calls
            parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(64)))
            assert b"".join(parts) == content[:64 * 4096]
            assert engine.submit_calls - calls == 1, "64 reads made in one iteration: one io_uring_enter"
            n = 300                 # more than the ring's 128 slots: the rest wait in the queue
            parts = await asyncio.gather(*(f.read(4096, offset=(i % 256) * 4096) for i in range(n)))
            assert all(p == content[(i % 256) * 4096:(i % 256 + 1) * 4096] for i, p in enumerate(parts))
            assert engine.ctx.in_flight == 0 and not engine.queue

    asyncio.run(main())


GATHER_64 = """
import asyncio, sys, kernaio
async def main():
    async with kernaio.open(sys.argv[1], "rb", backend="io_uring") as f:
        parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(64)))
        assert all(len(p) == 4096 for p in parts)
asyncio.run(main())
print("ok")
"""


def traced(script: str, path: Path) -> strace.Trace:
    """script (which prints "ok" when done) run on path under strace -f, its io_uring calls
    and any io_submit traced; the test is skipped where strace cannot run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT_PY))
    try:
        tr = strace.run([sys.executable, "-c", script, str(path)], env=env,
                        trace="io_uring_setup,io_uring_enter,io_submit")
    except Unavailable as why:
        pytest.skip(str(why))
    assert tr.returncode == 0 and "ok" in tr.stdout, tr.stderr[-2000:]
    return tr


def test_strace_one_io_uring_enter_for_64_reads_and_no_thread(data: tuple[Path, bytes]) -> None:
    tr = traced(GATHER_64, data[0])
    assert tr.named("io_uring_setup"), "no io_uring_setup: is backend='io_uring' using io_uring at all?"
    assert not tr.named("io_submit"), "io_submit seen: the io_uring backend must not use kernel AIO"
    enters = tr.named("io_uring_enter")
    sizes = [int(c.args.split(",")[1]) for c in enters]     # io_uring_enter(fd, to_submit, ...)
    assert sizes == [64], f"io_uring_enter to_submit sizes {sizes}: one call for the 64 reads of a gather"
    assert not tr.threads_created, f"{len(tr.threads_created)} thread(s) created with clone: there must be none"


def test_cancelled_read_keeps_its_buffer_until_the_completion(data: tuple[Path, bytes], sqpoll: bool) -> None:
    path, content = data

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with uopen(path, sqpoll=sqpoll) as f:
            engine = _engine.for_running_loop("io_uring", sqpoll=sqpoll)
            loop.remove_reader(engine.ctx.fileno())    # hold completions back: the test decides
            buf = kernaio.aligned_buffer(65536)
            task = asyncio.create_task(f.readinto(buf, offset=0))
            while engine.ctx.in_flight == 0:
                await asyncio.sleep(0)
            task.cancel()           # -> IORING_OP_ASYNC_CANCEL; its own CQE is reaped and skipped
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(BufferError):
                buf.close()         # still pinned: the kernel may be writing into it
            loop.add_reader(engine.ctx.fileno(), engine._on_completions)
            while engine.ctx.in_flight:
                await asyncio.sleep(0.001)
            # A direct read already at the device completes; one still waiting was cancelled.
            assert buf[:] in (content[:65536], bytes(65536)), "the buffer holds neither the data nor zeros"
            buf.close()             # released with the completion
            assert await f.read(4096) == content[:4096], "the ring works after a cancel"

    asyncio.run(main())


def test_ring_level_semantics(data: tuple[Path, bytes]) -> None:
    """UringContext itself: the slots, rollback of a bad batch, cancel, close waiting."""
    path, content = data
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    ctx = _kernaio.UringContext(4)
    try:
        with pytest.raises(ValueError, match="capacity"):
            _kernaio.UringContext(0)
        first = _kernaio.Request(path, _kernaio.OP_READ_NEW, fd, None, 0, 10)
        with pytest.raises(TypeError, match="Request"):   # the 2nd is not a Request: nothing is taken
            ctx.submit([first, ("b",)])  # type: ignore[list-item]
        assert ctx.free == 4 and ctx.in_flight == 0
        buf = bytearray(4096)
        reqs = [_kernaio.Request(path, _kernaio.OP_READ, fd, buf, 0, 4096)]
        reqs += [_kernaio.Request(path, _kernaio.OP_READ_NEW, fd, None, i, 5) for i in range(1, 6)]
        assert ctx.submit(reqs) == 4, "four free slots: four taken"
        assert ctx.cancel(reqs[3]) in (True, False) and ctx.cancel("unknown") is False
        del reqs                            # now only the slots hold the four taken (and so pin buf)
        with pytest.raises(BufferError):
            buf.extend(b"x")                # pinned until its completion is reaped
        ctx.close()                         # waits for the four reads, then releases them
        assert ctx.closed and ctx.in_flight == 0 and bytes(buf) == content[:4096]
        buf.extend(b"x")                    # released
        ctx.close()
        with pytest.raises(ValueError, match="closed"):
            ctx.reap()
    finally:
        ctx.close()
        os.close(fd)
    ctx = _kernaio.UringContext(2)
    try:
        fsync_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        fsync = _kernaio.Request(path, _kernaio.OP_FSYNC, fsync_fd, None, 0, 0)
        assert ctx.submit([fsync]) == 1
        assert ctx.cancel(fsync) is True    # fsync waits in io-wq: the kernel can be asked
        done: list[tuple[object, int, bytes | None]] = []
        while not done:
            time.sleep(0.001)
            done = ctx.reap()
        assert done[0][0] is fsync and done[0][1] in (0, -errno.ECANCELED, -errno.EINTR), done
        os.close(fsync_fd)
    finally:
        ctx.close()


def test_closing_a_file_with_reads_in_flight_waits(data: tuple[Path, bytes], sqpoll: bool) -> None:
    path, content = data

    async def main() -> None:
        f = uopen(path, sqpoll=sqpoll)
        engine = _engine.for_running_loop("io_uring", sqpoll=sqpoll)
        tasks = [asyncio.create_task(f.read(4096, offset=i * 4096)) for i in range(32)]
        while engine.ctx.in_flight == 0 and not all(t.done() for t in tasks):
            await asyncio.sleep(0)
        await f.close()
        assert engine.ctx.in_flight_for(f) == 0 and engine.ctx.in_flight == 0
        await asyncio.sleep(0)
        assert [t.result() for t in tasks] == [content[i * 4096:(i + 1) * 4096] for i in range(32)]

    asyncio.run(main())


def uring_fds() -> int:
    """This process's io_uring instances (each ring is one fd: anon_inode:[io_uring])."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:[io_uring]"
        except OSError:
            pass                    # the directory's own fd, gone already
    return count


def test_a_thousand_loops_do_not_leak_rings(data: tuple[Path, bytes], sqpoll: bool) -> None:
    path, content = data

    async def one() -> bytes:
        async with uopen(path, sqpoll=sqpoll) as f:
            return await f.read(4096)

    before = uring_fds()
    for _ in range(1000):
        assert asyncio.run(one()) == content[:4096]
    gc.collect()
    grown = uring_fds() - before
    assert grown <= _engine.POOL_SIZE + 1, f"{grown} more io_uring fds after 1,000 loops: rings leak"


BLOCKED = """
import asyncio, errno, sys, kernaio
async def main():
    async with kernaio.open(sys.argv[1], "rb", backend="io_uring") as f:
        try:
            await f.read(4096)
        except PermissionError as err:
            said = str(err)
            print("refused", err.errno == errno.EPERM, "io_uring is blocked here" in said, "make doctor" in said)
            return
    print("no error")
asyncio.run(main())
"""


def test_strace_injected_eperm_is_a_clear_oserror_not_a_fallback(data: tuple[Path, bytes]) -> None:
    # Make io_uring_setup fail with EPERM, as Docker's seccomp profile does (strace injects it).
    try:
        strace.check()
    except Unavailable as why:
        pytest.skip(str(why))
    env = dict(os.environ, PYTHONPATH=str(ROOT_PY))
    proc = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=io_uring_setup",
                           "-e", "inject=io_uring_setup:error=EPERM", "--", sys.executable, "-c", ALARM + BLOCKED,
                           str(data[0])], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["refused", "True", "True", "True"], proc.stdout + proc.stderr[-2000:]


def test_strace_refused_submit_is_taken_back_and_retried(data: tuple[Path, bytes], tmp_path: Path) -> None:
    # io_uring_enter answering EAGAIN (the kernel short of memory) consumed nothing: the 64
    # SQEs must be taken back out of the SQ ring (not left behind to be submitted twice) and
    # the engine must retry them. strace injects the EAGAIN twice.
    try:
        strace.check()
    except Unavailable as why:
        pytest.skip(str(why))
    log = tmp_path / "strace.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT_PY))
    proc = subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e", "trace=io_uring_enter",
                           "-e", "inject=io_uring_enter:error=EAGAIN:when=1..2", "--", sys.executable, "-c",
                           ALARM + GATHER_64, str(data[0])], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    enters = [ln.split("io_uring_enter(", 1)[1] for ln in log.read_text().splitlines() if "io_uring_enter(" in ln]
    assert [e.split(",")[1].strip() for e in enters] == ["64", "64", "64"], enters
    assert "INJECTED" in enters[1] and enters[2].split("=")[-1].strip() == "64", enters


SQPOLL_ROUNDS = """
import asyncio, sys, kernaio
async def main():
    async with kernaio.open(sys.argv[1], "rb", backend="io_uring", sqpoll=True) as f:
        for _ in range(10):
            parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(32)))
            assert all(len(p) == 4096 for p in parts)
        print("threads", *sorted(open(f"/proc/self/task/{t}/comm").read().split()[0]
                                 for t in __import__("os").listdir("/proc/self/task")))
asyncio.run(main())
print("ok")
"""


def test_sqpoll_submits_from_a_kernel_thread_not_from_io_uring_enter(data: tuple[Path, bytes]) -> None:
    """sqpoll=True: an iou-sqp kernel thread of the process reads the SQ ring, so ten batches
    need fewer than ten io_uring_enter calls (one only when that thread had gone to sleep);
    still no thread of the program's own (clone)."""
    tr = traced(SQPOLL_ROUNDS, data[0])
    setups = tr.named("io_uring_setup")
    assert setups and "IORING_SETUP_SQPOLL" in setups[0].args, f"no SQPOLL ring was made: {setups[:1]}"
    threads = tr.stdout.split("threads", 1)[1].split()
    assert any(name.startswith("iou-sqp") for name in threads), f"no iou-sqp thread in /proc/self/task: {threads}"
    enters = tr.named("io_uring_enter")
    assert len(enters) < 10, f"{len(enters)} io_uring_enter calls for 10 batches: the SQ thread should take them"
    assert not tr.threads_created, f"{len(tr.threads_created)} thread(s) created with clone: there must be none"


def test_sqpoll_ring_level_semantics(data: tuple[Path, bytes]) -> None:
    """UringContext(sqpoll=True): what the kernel thread took is never taken back; close waits."""
    path, content = data
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    ctx = _kernaio.UringContext(4, sqpoll=True)
    try:
        assert ctx.sqpoll
        buf = bytearray(4096)
        reqs = [_kernaio.Request(path, _kernaio.OP_READ, fd, buf, 0, 4096)]
        reqs += [_kernaio.Request(path, _kernaio.OP_READ_NEW, fd, None, i, 5) for i in range(1, 6)]
        assert ctx.submit(reqs) == 4, "four free slots: four taken, all of them the kernel thread's"
        done: list[tuple[object, int, bytes | None]] = []
        deadline = time.monotonic() + 10
        while len(done) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)
            done = ctx.reap()
        which = {reqs.index(d[0]): d[2] for d in done}  # type: ignore[arg-type]
        assert sorted(which) == [0, 1, 2, 3] and bytes(buf) == content[:4096], done
        assert [which[i] for i in (1, 2, 3)] == [content[i:i + 5] for i in (1, 2, 3)]
        del done[:]
        assert ctx.submit(reqs[4:]) == 2
        ctx.close()                         # waits for the two, then releases them
        assert ctx.closed and ctx.in_flight == 0
    finally:
        ctx.close()
        os.close(fd)


@pytest.fixture(autouse=True)
def _no_engines_left() -> Iterator[None]:
    yield
    _engine.close_all()             # each test starts with no ring kept from another
