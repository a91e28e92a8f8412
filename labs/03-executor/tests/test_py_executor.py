"""Lab 3, Python half: the thread pool (miniloop/executor.py) and AsyncFile (miniloop/files.py).

The first tests run your pool in this process, on the mini loop of lab 2, and look
inside: which thread ran what, which fd wakes the loop, how many wake-ups, what a
cancel does. The last ones run `python -m miniloop.files` on a 4 MiB file under
/proc and strace, to check the mechanism the talk is about: the reads happen in
worker threads you can count, while the loop's thread sleeps in epoll_wait; and an
idle pool costs nothing.
"""
from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import hashlib
import os
import random
import re
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from grading.deadline import LoopStuck, deadline
from grading.plugin import Impl
from grading.programs import make_data
from miniloop.executor import ThreadPool, run_in_executor
from miniloop.files import AsyncFile
from miniloop.futures import CancelledError, Future
from miniloop.loop import EventLoop, sleep
from xray import proc, strace

EPOLL_WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
DATA_SIZE = 4 << 20         # the file the scripts read: 4 MiB...
CHUNK = 64 << 10            # ...in 64 preads of 64 KiB
WORKERS = 3                 # not the default 4: the thread count must come from the argument


# --- helpers ------------------------------------------------------------------------------------

ADVICE = "Did a worker die (see the exception printed above), or did the loop miss a wake-up?"


def run(loop: EventLoop, aw: Future[Any] | Coroutine[Any, Any, Any], seconds: float = 5.0) -> Any:
    """loop.run_until_complete(aw), failing after `seconds` instead of hanging."""
    with deadline(seconds, "run_until_complete", ADVICE):
        return loop.run_until_complete(aw)


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
def loop() -> Iterator[EventLoop]:
    lp = EventLoop()
    yield lp
    lp.close()


@pytest.fixture
def pool(loop: EventLoop) -> Iterator[ThreadPool]:
    """Two workers. Shut down at the end, without ever hanging the grader."""
    p = ThreadPool(workers=2)
    yield p
    shutdown_within(p, 5)


# --- run_in_executor and the workers ------------------------------------------------------------

@pytest.mark.hint("py-submit")
def test_run_in_executor_runs_fn_in_a_worker_thread(loop: EventLoop, pool: ThreadPool) -> None:
    """The Future resolves to what fn(*args) returned, and fn ran in another thread than the loop's."""
    def job(a: int, b: str) -> tuple[int, str, int]:
        return a * 2, b.upper(), threading.get_ident()

    value, text, ident = run(loop, run_in_executor(loop, pool, job, 21, "pool"))
    assert (value, text) == (42, "POOL"), f"the Future's result was {(value, text)}, not what fn(21, 'pool') returned"
    assert ident != threading.get_ident(), (
        "fn ran in the loop's own thread: run_in_executor must queue a job for a worker, not call fn")


@pytest.mark.hint("py-worker")
def test_pool_starts_exactly_its_workers_at_the_first_job(loop: EventLoop) -> None:
    """No thread before the first job; then exactly `workers` threads, all used, never more."""
    before = {t.ident for t in threading.enumerate()}
    pool = ThreadPool(workers=3)
    try:
        assert new_threads(before) == [], "ThreadPool() started threads before any job: start them at the first job"
        lock = threading.Lock()
        idents: set[int] = set()
        # The first 3 jobs wait for each other: they can only all return if 3 workers run them at once.
        meet = threading.Barrier(3, timeout=3)

        def job(i: int) -> int:
            with lock:
                idents.add(threading.get_ident())
            if i < 3:
                meet.wait()
            else:
                time.sleep(0.01)
            return i

        try:
            results = run(loop, gather(*(run_in_executor(loop, pool, job, i) for i in range(12))))
        except threading.BrokenBarrierError:
            pytest.fail(f"3 jobs that wait for each other were not all running at once after 3 s (threads used: "
                        f"{len(idents)}): with workers=3, all 3 workers must take jobs", pytrace=False)
        assert results == list(range(12)), f"results {results}: each Future must get its own job's result"
        started = new_threads(before)
        assert len(started) == 3, (
            f"ThreadPool(workers=3) runs {len(started)} threads after 12 jobs: start exactly `workers` "
            "threads at the first job, and let them take every job (no thread per job)")
        assert idents <= {t.ident for t in started}, "some jobs ran in threads that are not the pool's workers"
        run(loop, gather(*(run_in_executor(loop, pool, job, i) for i in range(6))))
        assert len(new_threads(before)) == 3, "more jobs started more threads: the pool must reuse its workers"
    finally:
        shutdown_within(pool, 5)


@pytest.mark.hint("py-worker")
def test_workers_exit_at_shutdown(loop: EventLoop) -> None:
    """shutdown() wakes the idle workers; they see the pool is shut down and return."""
    before = {t.ident for t in threading.enumerate()}
    pool = ThreadPool(workers=3)
    assert run(loop, run_in_executor(loop, pool, sum, [1, 2, 3])) == 6
    workers = new_threads(before)
    assert len(workers) == 3, f"{len(workers)} worker threads after the first job, expected 3"
    if not shutdown_within(pool, 3):
        pytest.fail("pool.shutdown() still waits for the workers after 3 s: a worker woken by notify_all() "
                    "must return when the queue is empty and the pool is shut down", pytrace=False)
    alive = [t for t in workers if t.is_alive()]
    assert not alive, f"{len(alive)} worker(s) still alive after shutdown()"


@pytest.mark.hint("py-eventfd")
def test_workers_wake_the_loop_through_an_eventfd(loop: EventLoop, pool: ThreadPool) -> None:
    """The loop watches a non-blocking, close-on-exec eventfd (or pipe) and sleeps in select(None) until a worker writes it."""
    before = watched_fds(loop)
    turns = spy_select(loop)

    def slow() -> str:
        time.sleep(0.3)
        return "slept"

    fut = run_in_executor(loop, pool, slow)
    added = watched_fds(loop) - before
    assert len(added) == 1, (
        f"the loop watches {len(added)} new fd(s) after run_in_executor (expected 1): the first job "
        "for a loop makes an eventfd and registers it with loop.add_reader, so workers can wake epoll_wait")
    fd = added.pop()
    target = os.readlink(f"/proc/self/fd/{fd}")
    assert target == "anon_inode:[eventfd]" or target.startswith(("pipe:", "socket:")), (
        f"the fd the loop watches is {target}: expected an eventfd (os.eventfd) or a pipe")
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK, (
        f"the wake-up fd {fd} is blocking: with EFD_NONBLOCK a spurious wake-up costs an EAGAIN, "
        "without it the loop's thread would block in read()")
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, f"the wake-up fd {fd} lacks EFD_CLOEXEC"

    assert run(loop, fut) == "slept"
    sleepers = [t for t in turns if t.duration >= 0.2]
    assert len(turns) <= 4 and sleepers, (
        f"while one job ran for 0.3 s the loop made {len(turns)} select() calls (timeouts "
        f"{[t.timeout for t in turns][:8]}): it must sleep once, until the worker's write wakes it")
    assert sleepers[0].timeout is None and fd in sleepers[0].fds, (
        f"the loop slept with timeout {sleepers[0].timeout} and woke for fds {sleepers[0].fds}: it should sleep "
        f"with no timeout (None) and be woken by the eventfd {fd}, not poll")


@pytest.mark.hint("py-loop-thread")
def test_futures_are_completed_on_the_loop_thread_only(loop: EventLoop, pool: ThreadPool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers never call a Future or loop method: results are set by the loop, in its own thread."""
    calls: list[tuple[str, int]] = []

    def spy(cls: type, name: str) -> None:
        real = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append((f"{cls.__name__}.{name}", threading.get_ident()))
            return real(*args, **kwargs)
        monkeypatch.setattr(cls, name, wrapper)

    for name in ("set_result", "set_exception", "cancel", "add_done_callback"):
        spy(Future, name)
    for name in ("call_soon", "call_later", "add_reader", "remove_reader", "create_future"):
        spy(EventLoop, name)

    def job(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(i)
        return i

    async def scenario() -> list[str]:
        outcomes = []
        for fut in [run_in_executor(loop, pool, job, i) for i in range(24)]:
            try:
                outcomes.append(str(await fut))
            except ValueError as err:
                outcomes.append(f"error {err}")
        return outcomes

    outcomes = run(loop, scenario())
    assert outcomes == [f"error {i}" if i % 3 == 0 else str(i) for i in range(24)]
    main = threading.get_ident()
    foreign = sorted({name for name, ident in calls if ident != main})
    assert not foreign, (
        f"{', '.join(foreign)} called from a worker thread: the loop is not thread-safe. A worker only "
        "appends the finished job to the done-queue (under its lock) and writes the eventfd")
    assert any(name == "Future.set_result" for name, _ in calls), "no Future.set_result was called at all"


@pytest.mark.hint("py-coalesce")
def test_jobs_that_finish_together_cost_one_write_and_one_wakeup(loop: EventLoop, pool: ThreadPool) -> None:
    """12 jobs finish while the loop is busy: the workers write the eventfd once, and one wake-up delivers all 12."""
    before = watched_fds(loop)
    turns = spy_select(loop)

    lock = threading.Lock()
    finished = [0]
    all_done = threading.Event()
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        with lock:
            finished[0] += 1
            if finished[0] == 12:
                all_done.set()
        return i * 1000

    async def scenario() -> list[int]:
        futures = [run_in_executor(loop, pool, job, i) for i in range(12)]
        # Block the loop's thread on purpose until every job has run and been posted: the
        # loop cannot look at its eventfd meanwhile, so every write the workers make piles up.
        all_done.wait(5)
        settled(pool)
        for fd in watched_fds(loop) - before:
            seen.append(pending_writes(fd))
        return await gather(*futures)

    results = run(loop, scenario())
    assert results == [i * 1000 for i in range(12)], f"results: {results}"
    writes, unit = max(seen, default=(0, "writes"))
    assert writes >= 1, "12 jobs finished, but nothing was written to the loop's wake-up fd: post() must write it"
    most = 8 if unit.startswith("bytes") else 1     # one write of up to 8 bytes into a pipe
    assert writes <= most, (
        f"12 jobs finished while the loop was busy, and the workers wrote its wake-up fd for each: {writes} "
        f"{unit}, expected 1. A worker that finds the done-queue not empty has nothing to say (the loop is "
        "already woken for the first job): in post(), write the eventfd only if the queue was empty")
    wake_fds = watched_fds(loop) - before
    wakeups = [t for t in turns if set(t.fds) & wake_fds]
    assert len(wakeups) == 1, (
        f"12 jobs had all finished when the loop looked, and it woke up {len(wakeups)} times for them: "
        "one wake-up must deliver every finished job (read the eventfd, then take the whole done-queue)")


@pytest.mark.hint("py-coalesce")
def test_a_job_that_finishes_during_a_wakeup_is_not_lost(loop: EventLoop, pool: ThreadPool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A job posted while the loop handles a wake-up is delivered too: read the eventfd first, then take the queue."""
    before = watched_fds(loop)
    gate, second_ran = threading.Event(), threading.Event()

    def second() -> str:
        gate.wait(5)
        second_ran.set()
        return "second"

    first_fut = run_in_executor(loop, pool, str, "first")
    second_fut = run_in_executor(loop, pool, second)
    wake_fds = watched_fds(loop) - before
    armed = [True]

    def meanwhile(fd: int) -> None:
        """Called as the loop reads its wake-up fd: let the second job finish and be posted right now."""
        if armed[0] and fd in wake_fds:
            armed[0] = False
            gate.set()
            second_ran.wait(5)
            settled(pool)                # the worker posts it (and writes the eventfd if the queue was empty)

    real_eventfd_read, real_read = os.eventfd_read, os.read

    def eventfd_read(fd: int) -> int:
        meanwhile(fd)
        return real_eventfd_read(fd)

    def read(fd: int, n: int) -> bytes:
        meanwhile(fd)
        return real_read(fd, n)

    monkeypatch.setattr(os, "eventfd_read", eventfd_read)
    monkeypatch.setattr(os, "read", read)
    try:
        results = run(loop, gather(first_fut, second_fut), seconds=3)
    except LoopStuck:
        pytest.fail("a job that finished while the loop was handling another job's wake-up was never delivered: "
                    "its wake-up was lost. In _on_readable, read the eventfd FIRST, then take the whole queue "
                    "(the other way round, your read eats the wake-up of a job posted in between)", pytrace=False)
    finally:
        gate.set()
    assert results == ["first", "second"], f"results: {results}"


@pytest.mark.hint("py-exceptions")
def test_exceptions_arrive_at_the_await_with_their_type(loop: EventLoop, pool: ThreadPool, tmp_path: Path) -> None:
    """What fn raises in the worker is raised at the await: same type, same errno; the worker survives."""
    missing = str(tmp_path / "no-such-file")

    class Custom(Exception):
        pass

    def boom() -> None:
        raise Custom("raised in a worker")

    async def scenario() -> list[BaseException | None]:
        seen: list[BaseException | None] = []
        for fut in (run_in_executor(loop, pool, os.open, missing, os.O_RDONLY),
                    run_in_executor(loop, pool, boom)):
            try:
                await fut
                seen.append(None)
            except Exception as err:
                seen.append(err)
        return seen

    not_found, custom = run(loop, scenario())
    assert isinstance(not_found, FileNotFoundError), (
        f"os.open of a missing file gave {not_found!r} at the await, not FileNotFoundError: set the "
        "exception the job raised on the Future (set_exception), unchanged")
    assert not_found.errno == errno.ENOENT and not_found.filename == missing, (
        f"the FileNotFoundError lost its details: errno {not_found.errno}, filename {not_found.filename!r}")
    assert isinstance(custom, Custom) and str(custom) == "raised in a worker", f"got {custom!r}"
    assert run(loop, run_in_executor(loop, pool, len, "still here")) == 10, "the pool stopped working after an error"


@pytest.mark.hint("py-cancel")
def test_cancelling_a_queued_job_takes_it_out_of_the_queue(loop: EventLoop) -> None:
    """A Task cancelled while its job waits for a worker: CancelledError at the await, and the job never runs."""
    pool = ThreadPool(workers=1)
    gate = threading.Event()
    ran: list[str] = []

    async def wait_for_job() -> None:
        await run_in_executor(loop, pool, ran.append, "the cancelled job ran")

    try:
        blocker = run_in_executor(loop, pool, gate.wait, 5)          # the only worker is busy...
        waiter = loop.create_task(wait_for_job())                    # ...so this job waits in the queue
        run(loop, sleep(0.05))
        assert proc.wait_until(lambda: pool.queued() == 1, timeout=2), (
            f"{pool.queued()} job(s) queued, expected 1 (the only worker is busy with the first)")
        waiter.cancel()
        with pytest.raises(CancelledError):
            run(loop, waiter)
        run(loop, sleep(0.02))                                       # the done-callbacks run
        assert pool.queued() == 0, (
            "the job of a cancelled Future is still in the pool's queue: a done-callback on the Future "
            "must call pool.cancel(job), which removes it")
        gate.set()
        assert run(loop, blocker) is True
        assert run(loop, run_in_executor(loop, pool, str.upper, "next")) == "NEXT"
        assert ran == [], "a job whose Future was cancelled before any worker took it still ran"
    finally:
        gate.set()
        shutdown_within(pool, 5)


@pytest.mark.hint("py-cancel")
def test_cancelling_a_running_job_drops_its_result(loop: EventLoop) -> None:
    """A job already running cannot be stopped: it finishes, and the loop drops its result."""
    pool = ThreadPool(workers=1)
    started, gate = threading.Event(), threading.Event()

    def job() -> str:
        started.set()
        gate.wait(5)
        return "too late"

    try:
        fut = run_in_executor(loop, pool, job)
        assert started.wait(3), "the job did not start within 3 s"
        assert fut.cancel() is True
        gate.set()
        try:
            run(loop, sleep(0.3))          # the job ends and its result comes back to the loop
        except Exception as err:
            pytest.fail(f"when the cancelled job's result came back, the loop raised {err!r}: check "
                        "`if fut.done()` before setting a result (the Future was cancelled)", pytrace=False)
        assert fut.cancelled(), "the cancelled Future did not stay cancelled"
        assert run(loop, run_in_executor(loop, pool, str.upper, "next")) == "NEXT", "the pool stopped working"
    finally:
        gate.set()
        shutdown_within(pool, 5)


# --- AsyncFile -----------------------------------------------------------------------------------

def _spy_thread(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[int, tuple[Any, ...]]]:
    """Record (thread, args) of every call of os.<name>, and still make the call."""
    calls: list[tuple[int, tuple[Any, ...]]] = []
    real = getattr(os, name)

    def wrapper(*args: Any) -> Any:
        calls.append((threading.get_ident(), args))
        return real(*args)

    monkeypatch.setattr(os, name, wrapper)
    return calls


@pytest.mark.hint("py-asyncfile-open")
def test_asyncfile_open_runs_in_a_worker(loop: EventLoop, pool: ThreadPool, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """AsyncFile.open calls os.open in a worker; a missing file raises FileNotFoundError at the await."""
    path = tmp_path / "hello.bin"
    path.write_bytes(b"hello")
    opens = _spy_thread(monkeypatch, "open")

    async def open_it(p: Path) -> AsyncFile:
        return await AsyncFile.open(str(p), "rb", pool=pool)

    f = run(loop, open_it(path))
    try:
        assert isinstance(f, AsyncFile) and f.name == str(path), f"AsyncFile.open gave {f!r}"
        assert [args[0] for _, args in opens] == [str(path)], f"os.open calls: {opens}"
        assert opens[0][0] != threading.get_ident(), (
            "os.open ran in the loop's thread: open can block as well (aiofiles runs it in the pool); "
            "use run_in_executor")
        flags = fcntl.fcntl(f.fileno(), fcntl.F_GETFL)
        assert flags & os.O_ACCMODE == os.O_RDONLY, "mode 'rb' must open the file read-only (use open_flags(mode))"
        assert fcntl.fcntl(f.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC, "the file's fd is not close-on-exec"
    finally:
        if not f.closed:
            os.close(f.fileno())
    missing = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError) as info:
        run(loop, open_it(missing))
    assert info.value.errno == errno.ENOENT and info.value.filename == str(missing), (
        f"errno {info.value.errno}, filename {info.value.filename!r}: the error of os.open must arrive unchanged")


@pytest.mark.hint("py-asyncfile-read")
def test_asyncfile_read_is_pread_with_an_offset_and_read_without(loop: EventLoop, pool: ThreadPool, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """read(n, offset) leaves the file position alone (pread); read(n) reads on from it; read() to the end."""
    data = random.Random(1).randbytes(300_000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)

    async def scenario() -> dict[str, bytes]:
        got = {}
        async with AsyncFile.open(str(path), "rb", pool=pool) as f:
            fd = f.fileno()
            preads = _spy_thread(monkeypatch, "pread")
            reads = _spy_thread(monkeypatch, "read")
            got["read(1000, offset=5000)"] = await f.read(1000, offset=5000)
            got["read(100)"] = await f.read(100)
            got["read(100) again"] = await f.read(100)
            got["read(50, offset=size - 20)"] = await f.read(50, offset=len(data) - 20)
            got["read(10, offset=size)"] = await f.read(10, offset=len(data))
            got["read()"] = await f.read()
            got["read(10) at the end"] = await f.read(10)
            got["read(offset=1000)"] = await f.read(offset=1000)
        used = [ident for ident, args in preads + reads if args and args[0] == fd]
        assert used, "no os.pread or os.read on the file's fd: how did the bytes arrive?"
        assert threading.get_ident() not in used, "the file was read in the loop's thread: use run_in_executor"
        assert f.closed, "`async with` must close the file at the end of the block"
        return got

    got = run(loop, scenario())
    expected = {
        "read(1000, offset=5000)": data[5000:6000],
        "read(100)": data[:100],                       # the pread before did not move the position
        "read(100) again": data[100:200],
        "read(50, offset=size - 20)": data[-20:],      # a short read at the end of the file
        "read(10, offset=size)": b"",
        "read()": data[200:],
        "read(10) at the end": b"",
        "read(offset=1000)": data[1000:],
    }
    for call, want in expected.items():
        have = got[call]
        assert have == want, (
            f"f.{call} returned {len(have)} bytes that differ from the file's {len(want)} (starting "
            f"{have[:8]!r}, expected {want[:8]!r}). With an offset use os.pread (the position does not "
            "move); without, os.read; n < 0: _read_all")


@pytest.mark.hint("py-asyncfile-read")
def test_concurrent_preads_give_back_the_file_byte_for_byte(loop: EventLoop, pool: ThreadPool, tmp_path: Path) -> None:
    """32 preads in flight at once, in two workers, reassemble the file exactly."""
    data = random.Random(2).randbytes(1 << 20)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    chunk = 32 << 10

    async def scenario() -> bytes:
        async with AsyncFile.open(str(path), "rb", pool=pool) as f:
            tasks = [loop.create_task(f.read(chunk, offset=off)) for off in range(0, len(data), chunk)]
            return b"".join([await task for task in tasks])

    got = run(loop, scenario())
    assert got == data, (
        f"32 concurrent reads gave back {len(got)} bytes {'that differ from' if len(got) == len(data) else 'instead of'} "
        f"the file's {len(data)}: concurrent reads need os.pread (each at its own offset)")


@pytest.mark.hint("py-asyncfile-write")
def test_asyncfile_write_at_the_position_and_at_an_offset(loop: EventLoop, pool: ThreadPool, tmp_path: Path) -> None:
    """The talk's aiofile example: write("Hello "), write("world", offset=7), fsync, read it back."""
    path = tmp_path / "hello.txt"

    async def scenario() -> tuple[int, int, int, bytes]:
        async with AsyncFile.open(str(path), "w+b", pool=pool) as f:
            first = await f.write(b"Hello ")
            second = await f.write(b"world", offset=7)
            await f.fsync()
            third = await f.write(b"!")          # at the position: pwrite did not move it
            return first, second, third, await f.read(offset=0)

    first, second, third, back = run(loop, scenario())
    assert (first, second, third) == (6, 5, 1), f"write() returned {(first, second, third)}: the counts written"
    assert back == path.read_bytes() == b"Hello !world", (
        f"the file holds {path.read_bytes()!r} (read back: {back!r}), expected b'Hello !world': write(data) "
        "writes at the file position (os.write), write(data, offset) at offset without moving it (os.pwrite)")


# --- the mechanism, seen from outside: python -m miniloop.files ----------------------------------

RESULT = re.compile(r"read (\d+) bytes in (\d+) preads .*sha256 ([0-9a-f]{64}), (\d+) threads")


@pytest.fixture(scope="module")
def data_file() -> Path:
    """A 4 MiB file in the labs' data directory (build/data, or $LAB_DATA_DIR), made once."""
    return make_data("lab3-py-executor.bin", DATA_SIZE, seed=3).path


def files_argv(impl: Impl, path: Path, linger: float) -> list[str]:
    return impl.python("miniloop.files", str(path), "--workers", str(WORKERS), "--chunk", str(CHUNK),
                       "--linger", str(linger))


def parse_result(line: str, stderr: Callable[[], str]) -> re.Match[str]:
    m = RESULT.search(line)
    if m is None:
        pytest.fail(f"`python -m miniloop.files` printed {line!r} instead of its 'read N bytes...' line. "
                    f"Its stderr: {stderr()[-800:]}", pytrace=False)
    return m


@pytest.mark.hint("py-see-threads")
def test_proc_shows_the_loop_thread_and_exactly_the_workers(impl: Impl, data_file: Path) -> None:
    """While the script reads 4 MiB through AsyncFile, /proc/PID/task shows workers + 1 threads; the bytes are exact."""
    expected = hashlib.sha256(data_file.read_bytes()).hexdigest()
    with proc.launch(files_argv(impl, data_file, linger=5.0), env=impl.env(), stderr=subprocess.PIPE) as script:
        def stderr() -> str:
            proc.stop(script)
            return script.stderr.read().decode(errors="replace") if script.stderr else ""

        peak = [0]
        done = threading.Event()

        def sample() -> None:            # watch the thread count while the file is read
            while not done.is_set():
                with contextlib.suppress(OSError):
                    peak[0] = max(peak[0], len(proc.threads(script.pid)))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            line = script.readline(timeout=15)
        finally:
            done.set()
            sampler.join()
        m = parse_result(line, stderr)
        threads = proc.threads(script.pid)
    assert int(m.group(1)) == DATA_SIZE and m.group(3) == expected, (
        f"the script read {m.group(1)} bytes with sha256 {m.group(3)[:16]}..., the file has {DATA_SIZE} bytes "
        f"with sha256 {expected[:16]}...: the bytes must be exactly those of a plain read")
    assert len(threads) == WORKERS + 1, (
        f"/proc/PID/task shows {len(threads)} threads after reading with ThreadPool(workers={WORKERS}): expected "
        f"{WORKERS + 1}, the loop's thread and the {WORKERS} workers, which wait for the next job")
    assert peak[0] <= WORKERS + 1, (
        f"while the file was read the process had up to {peak[0]} threads: a pool of {WORKERS} workers "
        "runs every job in those threads, it never starts one per job")


def _wake_fds(tr: strace.Trace) -> dict[int, float]:
    """The eventfds and pipe read ends made by the loop's thread: fd -> when."""
    fds: dict[int, float] = {}
    for c in tr.named("eventfd2", "eventfd", "pipe2"):
        if c.tid != tr.main_tid or c.retval is None or c.retval < 0:
            continue
        if c.name == "pipe2":
            m = re.match(r"\s*\[(\d+),", c.args)
            if m:
                fds[int(m.group(1))] = c.start
        else:
            fds[c.retval] = c.start
    return fds


@pytest.mark.hint("py-strace-workers")
def test_strace_shows_preads_in_workers_while_the_loop_sleeps_in_epoll_wait(impl: Impl, data_file: Path) -> None:
    """Under strace: open and every pread of the file on worker threads; the loop in epoll_wait meanwhile; few wake-ups."""
    tr = strace.run(files_argv(impl, data_file, linger=0), env=impl.env(), timeout=30,
                    trace="desc,openat,eventfd2,pipe2")
    if not RESULT.search(tr.stdout):
        pytest.fail(f"`python -m miniloop.files` under strace did not finish its read (exit {tr.returncode}). "
                    f"stdout {tr.stdout[-300:]!r}, stderr: {tr.stderr[-800:]}", pytrace=False)
    main = tr.main_tid
    opens = [c for c in tr.named("openat", "open") if str(data_file) in c.args and (c.retval or -1) >= 0]
    assert opens, f"no successful openat of {data_file} in the trace (calls seen: {tr.summary()})"
    opened = opens[0]
    assert opened.tid != main, (
        "the file was opened (openat) by the loop's thread: AsyncFile.open must run os.open in the pool")
    fd = opened.retval
    closes = [c.start for c in tr.named("close") if c.fd == fd and c.start > opened.start]
    until = closes[0] if closes else float("inf")
    reads = [c for c in tr.named("pread64", "read", "preadv", "preadv2", "readv")
             if opened.start < c.start <= until and c.fd == fd]
    assert len(reads) >= DATA_SIZE // CHUNK, (
        f"{len(reads)} reads of the file's fd {fd}, expected {DATA_SIZE // CHUNK} preads of {CHUNK} bytes")
    on_loop = [c for c in reads if c.tid == main]
    assert not on_loop, (
        f"{len(on_loop)} of {len(reads)} reads of the file ran on the loop's thread: every read must be a job "
        "for a worker")

    waits = [c for c in tr.named(*EPOLL_WAITS) if c.tid == main and c.duration is not None]
    during = [r for r in reads if any(w.start <= r.start <= w.end for w in waits)]
    assert during, (
        f"no read of the file started while the loop's thread was inside epoll_wait ({len(waits)} calls): "
        "the loop must sleep in epoll_wait while the workers read, not wait for them another way")

    wake_fds = _wake_fds(tr)
    assert wake_fds, (
        "the loop's thread created no eventfd (eventfd2) or pipe (pipe2): how do the workers wake it?")
    wakeups = []        # successful reads of a wake-up fd by the loop's thread
    for c in tr.named("read"):
        wake_fd = c.fd
        if c.tid == main and wake_fd in wake_fds and c.start > wake_fds[wake_fd] and (c.retval or 0) > 0:
            wakeups.append(c)
    assert wakeups, f"the loop's thread never read its wake-up fd(s) {sorted(wake_fds)}"
    assert len(wakeups) < len(reads), (
        f"the loop read its wake-up fd {len(wakeups)} times for {len(reads)} preads: wake-ups must be "
        "coalesced (write the eventfd only when the done-queue was empty, take the whole queue per wake-up)")


@pytest.mark.hint("py-idle")
def test_idle_loop_and_idle_pool_burn_no_cpu(impl: Impl, data_file: Path) -> None:
    """After the read, the loop waits on a timer and the workers on their condition: about 0 s of CPU in 1 s."""
    with proc.launch(files_argv(impl, data_file, linger=5.0), env=impl.env(), stderr=subprocess.PIPE) as script:
        def stderr() -> str:
            proc.stop(script)
            return script.stderr.read().decode(errors="replace") if script.stderr else ""

        parse_result(script.readline(timeout=15), stderr)
        time.sleep(0.2)
        before = proc.cpu_seconds(script.pid)
        time.sleep(1.0)
        used = proc.cpu_seconds(script.pid) - before
        threads = len(proc.threads(script.pid))
    assert threads == WORKERS + 1, f"{threads} threads while idle, expected {WORKERS + 1}"
    assert used < 0.1, (
        f"the idle script used {used:.2f} s of CPU in 1 s: something polls. Idle workers must wait on the "
        "condition with no timeout, and the loop must not check the done-queue on a timer")


@pytest.mark.hint("py-idle")
def test_idle_loop_and_idle_pool_make_no_system_calls(impl: Impl, data_file: Path) -> None:
    """Under strace: in one idle second no thread makes a single call (no futex, no epoll_wait, no sleep)."""
    trace = "futex,desc,clock_nanosleep,nanosleep"
    tr = strace.run(files_argv(impl, data_file, linger=1.8), env=impl.env(), trace=trace, timeout=30)
    parse_result(tr.stdout, lambda: tr.stderr)
    # The idle second is timed from the script's own write of its result line (then it lingers 1.8 s).
    printed = [c for c in tr.named("write") if c.fd == 1 and "bytes in" in c.args]
    assert printed, f"no write of the result line to stdout in the trace (calls seen: {tr.summary()})"
    idle_from = printed[0].end + 0.3
    idle_to = idle_from + 1.0
    busy = [c for c in tr.calls if idle_from <= c.start <= idle_to and c.name not in ("clone", "clone3")]
    assert len(busy) <= 2, (
        f"{len(busy)} system calls began during one idle second, e.g. "
        f"{[(('loop' if c.tid == tr.main_tid else 'worker'), c.name, c.args[:40]) for c in busy[:6]]}: "
        "an idle worker must sleep in Condition.wait() without a timeout (one futex wait), and the loop in "
        "one epoll_wait; nothing may wake up to check")
    # A wait with a long timeout (5 s) makes no call within the second, but it is a poll all the
    # same: the call each worker sleeps in through the idle second must have no timeout at all.
    workers = set(tr.threads_created)
    asleep = [c for c in tr.calls if c.tid in workers and c.start < idle_from
              and (c.duration is None or c.end > idle_to)]
    timed = [c for c in asleep if _wait_timeout(c)]
    assert not timed, (
        f"{len(timed)} of {len(workers)} idle workers slept through the idle second in a wait with a timeout "
        f"(e.g. {timed[0].name} with {_wait_timeout(timed[0])}). Such a worker "
        "polls: it wakes up on its own, finds nothing and sleeps again, for ever, every idle pool. "
        "Call Condition.wait() with no timeout: only notify() should wake an idle worker")


def _wait_timeout(call: strace.Call) -> str:
    """The timeout of a call a thread sleeps in, as strace printed it; "" when it has none."""
    if call.name == "futex":
        timeout = call.arg(3)         # futex(uaddr, op, val, timeout, ...): NULL is "for ever"
        return "" if timeout in ("", "NULL") else timeout
    if call.name in ("nanosleep", "clock_nanosleep"):
        return call.args[:60]         # a sleep is nothing but a timeout
    return ""
