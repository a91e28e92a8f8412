"""Lab 3, Python half: the thread pool (miniloop/executor.py), run in this process.

These tests run your pool on the mini loop of lab 2 and look inside: which thread ran
what, which fd wakes the loop, how many wake-ups, what a cancel does. AsyncFile
(miniloop/files.py) is tested in test_py_asyncfile.py; `python -m miniloop.files` seen
from outside, under /proc and strace, in test_py_pool_seen.py.
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from grading.deadline import LoopStuck
from miniloop.executor import ThreadPool, run_in_executor
from miniloop.futures import CancelledError, Future
from miniloop.loop import EventLoop, sleep
from xray import proc

from executor_support import (gather, new_threads, pending_writes, pool, run, settled, shutdown_within,  # noqa: F401
                              spy_select, watched_fds)
from grading.loops import loop  # noqa: F401  (a fixture, as `pool` above)


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
