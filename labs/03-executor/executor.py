# Your copy of py/miniloop/executor.py: edit it, then run `make lab3`. (Generated; see docs/ARCHITECTURE.md.)
"""A thread pool for the mini event loop: run_in_executor rebuilt, the machine under aiofiles (lab 3).

epoll cannot wait for a regular file: a file is always "ready", and its read blocks
anyway (lab 2's last question). So the libraries that make file I/O "asynchronous"
without help from the kernel all do this: hand the blocking call to another thread,
and have that thread wake the loop when it is done. The talk's slide (aiofile's
run_in_thread) is `loop.run_in_executor(None, partial(func, ...))`; aiofiles,
asyncio.to_thread and libuv's uv_fs_* work the same way.

    loop = EventLoop()
    pool = ThreadPool(workers=4)             # no thread yet: all four start with the first job

    async def main() -> bytes:
        fd = await run_in_executor(loop, pool, os.open, "data.bin", os.O_RDONLY | os.O_CLOEXEC)
        return await run_in_executor(loop, pool, os.pread, fd, 4096, 0)

    data = loop.run_until_complete(main())
    pool.shutdown()

The parts, and which thread runs what:

    loop thread                                    worker threads
    run_in_executor: a Future and a Job
      pool.submit(job) ───────────────────────▶    ThreadPool._work: take a job from the queue,
                                                   job.run() (the blocking call: open, pread...),
    DoneQueue._on_readable  ◀── eventfd ────────   DoneQueue.post(job): append it under the lock,
      read the eventfd, take every finished         write the eventfd if the queue was empty
      job, set each Future's result

The rules that make it correct (libuv's src/threadpool.c keeps the same ones):
- The loop is not thread-safe. A worker never touches a Future and never calls a loop
  method: it appends the finished job to a locked queue and writes to an eventfd. Only
  the loop's thread, woken by epoll, sets results.
- Wake-ups are coalesced: a worker writes the eventfd only when the done-queue was empty,
  and the loop takes every finished job at each wake-up. Ten jobs that finish together
  cost one return from epoll_wait, not ten.
- Nobody polls: an idle worker sleeps on a condition variable (a futex), an idle loop in
  epoll_wait(..., -1). An idle pool costs no CPU at all.
- Locks: a ThreadPool's lock and a DoneQueue's lock are never held at the same time, so
  they cannot deadlock; no lock is held while a job runs or while a Future is completed.

Cancelling: a job still in the queue is taken out (it never runs). A running job cannot
be stopped (Python cannot interrupt a thread): it finishes, and its result is dropped.
"""
from __future__ import annotations

import collections
import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from miniloop.futures import Future
from miniloop.loop import EventLoop

T = TypeVar("T")


class Job:
    """One call fn(*args) for a worker, and the Future that waits for it on the loop.

    A Job changes hands; it is never shared: the loop thread makes it and puts it in the
    pool's queue (under the pool's lock); one worker takes it out, runs it, fills in
    result or exception, and puts it in the done-queue (under that queue's lock); the
    loop thread takes it from there. Each lock makes what the previous owner wrote
    visible to the next one.
    """

    __slots__ = ("fn", "args", "future", "done_queue", "result", "exception")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Future[Any],
                 done_queue: DoneQueue) -> None:
        self.fn = fn
        self.args = args
        self.future = future                         # touched by the loop thread only
        self.done_queue = done_queue                 # where the worker posts the finished job
        self.result: Any = None                      # what fn returned (set by the worker)
        self.exception: BaseException | None = None  # or what it raised (set by the worker)

    def __repr__(self) -> str:
        return f"<Job {getattr(self.fn, '__qualname__', self.fn)!r}>"

    def run(self) -> None:
        """Call fn(*args) and keep what it returned or raised (in a worker thread)."""
        try:
            self.result = self.fn(*self.args)
        except BaseException as err:   # whatever it is, it belongs to the coroutine awaiting the Future
            self.exception = err


class DoneQueue:
    """Finished jobs waiting for one loop, and the eventfd that wakes it (libuv: loop->wq, loop->wq_async).

    Made on the loop's thread by the first run_in_executor of a pool on that loop.
    post() is for the workers; everything else runs on the loop's thread.
    """

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()                          # guards _done and _closed
        self._done: collections.deque[Job] = collections.deque()  # finished, not delivered yet
        self._closed = False
        self.fd = -1                                           # the eventfd workers write to
        # TODO(lab3): create the eventfd the workers will write to: os.eventfd(0, os.EFD_CLOEXEC |
        #   os.EFD_NONBLOCK) (non-blocking: the loop must never block reading it), keep it
        #   in self.fd, and ask the loop to call self._on_readable whenever it is readable
        #   (loop.add_reader). This fd is how another thread makes epoll_wait return.
        raise NotImplementedError("lab3: DoneQueue.__init__ (the eventfd)")

    def post(self, job: Job) -> None:
        """Hand a finished job to the loop (called by a worker thread)."""
        # TODO(lab3): all of it under self._lock. Drop the job if the queue is closed (the pool
        #   was shut down: nobody will collect it). Else append it, and write 1 to the
        #   eventfd (os.eventfd_write) only if the queue was empty before: a non-empty
        #   queue means a wake-up is already on its way, and the loop will take every job
        #   at once. Writing while holding the lock means close() cannot close the fd in
        #   between (its number could already belong to another file). Never touch
        #   job.future or the loop here: they belong to the loop's thread.
        raise NotImplementedError("lab3: DoneQueue.post")

    def _on_readable(self) -> None:
        """Reader callback of the eventfd: deliver every finished job (on the loop thread)."""
        # TODO(lab3): first read the eventfd (os.eventfd_read returns the count and resets it to
        #   0; BlockingIOError only means there was nothing to read), THEN take the whole
        #   queue under the lock (swap it for an empty deque) and let go of the lock. In
        #   the other order a worker could post between the two steps, and our read would
        #   eat its wake-up: its job would sit in the queue with nothing left to wake us.
        #   Then, outside the lock, for each job: if its Future is already done (cancelled
        #   while the job ran), drop the result (lab 2's `if fut.done(): return`); else
        #   set_exception(job.exception) if it has one, or set_result(job.result).
        raise NotImplementedError("lab3: DoneQueue._on_readable")

    def close(self) -> None:
        """Stop taking jobs, stop watching the eventfd and close it (loop thread, or loop stopped)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True        # from now on post() drops jobs and never writes to the fd
            self._done.clear()
        if self.fd >= 0:
            if not self._loop.is_closed():
                self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


class ThreadPool:
    """`workers` threads that run blocking calls; they all start together, at the first job.

    Like libuv's pool (started at the first request), unlike concurrent.futures (one more
    thread per submit, up to max_workers): a pool that is never used costs no thread, and
    one that is used has exactly `workers` threads until shutdown(). Workers are daemon
    threads, so a pool that is never shut down does not keep the program from exiting.
    """

    def __init__(self, workers: int = 4) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, not {workers}")
        self.workers = workers
        self._lock = threading.Lock()              # guards _queue, _threads and _shutdown
        # Idle workers sleep on this condition (in the kernel, on a futex) until notified.
        self._work_ready = threading.Condition(self._lock)
        self._queue: collections.deque[Job] = collections.deque()   # jobs no worker has taken yet
        self._threads: list[threading.Thread] = []
        self._shutdown = False
        # One DoneQueue per loop this pool serves (touched by the loop thread only).
        self._done_queues: dict[EventLoop, DoneQueue] = {}

    def __repr__(self) -> str:
        # No lock here: a repr must work even where the lock is held (in a debugger, say).
        return f"<ThreadPool workers={self.workers} started={bool(self._threads)} queued~{len(self._queue)}>"

    def queued(self) -> int:
        """How many jobs wait for a worker right now (a snapshot: workers keep taking them)."""
        with self._lock:
            return len(self._queue)

    def done_queue_for(self, loop: EventLoop) -> DoneQueue:
        """The DoneQueue (and eventfd) of loop, made at the first job for it (loop thread)."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("this ThreadPool is shut down")
        done_queue = self._done_queues.get(loop)
        if done_queue is None:
            done_queue = self._done_queues[loop] = DoneQueue(loop)
        return done_queue

    def submit(self, job: Job) -> None:
        """Queue a job for the workers; the first job starts them all (loop thread)."""
        # TODO(lab3): all of it under the lock (`with self._work_ready:` takes it). Refuse with
        #   RuntimeError after shutdown(). If no worker exists yet, start self.workers
        #   threads running self._work (threading.Thread(target=..., daemon=True)) and keep
        #   them in self._threads. Append the job to self._queue and notify() the condition:
        #   that wakes one sleeping worker, since one job needs one worker, not all of them.
        raise NotImplementedError("lab3: ThreadPool.submit")

    def _work(self) -> None:
        """The body of every worker thread: take a job, run it, post it; until shutdown."""
        # TODO(lab3): loop forever. Under the lock: while the queue is empty and the pool is not
        #   shut down, self._work_ready.wait() (it lets go of the lock while it sleeps, and
        #   sleeps in the kernel: no timeout, no polling). If the queue is still empty, the
        #   pool is shut down: return. Else popleft() a job. Then, with the lock released
        #   (the other workers and the loop need it), job.run() and job.done_queue.post(job).
        raise NotImplementedError("lab3: ThreadPool._work")

    def cancel(self, job: Job) -> bool:
        """Take job out of the queue if no worker has started it; True if it was taken out (loop thread)."""
        # TODO(lab3): under the lock, remove the job from self._queue (deque.remove raises
        #   ValueError when it is not there: a worker took it already, and it cannot be
        #   stopped any more). Return whether it was removed.
        raise NotImplementedError("lab3: ThreadPool.cancel")

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool: no new jobs; the workers run what is queued, then exit.

        wait=True waits for them (join). The eventfds are closed at the end, so results
        that were not delivered by then are lost: await your Futures first. Call it on
        the loop's thread, or once the loop has stopped. A second call does nothing more.
        """
        with self._work_ready:
            self._shutdown = True
            self._work_ready.notify_all()   # every sleeping worker wakes, sees _shutdown, exits
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
        for done_queue in self._done_queues.values():
            done_queue.close()
        self._done_queues.clear()


def run_in_executor(loop: EventLoop, pool: ThreadPool, fn: Callable[..., T], *args: Any) -> Future[T]:
    """Run fn(*args) in one of pool's threads; return a Future of loop for what it returns or raises.

    The Future is completed on the loop's thread, by the loop itself (DoneQueue._on_readable),
    so await it from a coroutine running on loop. Cancelling it takes the job out of the
    queue if no worker has started it; a job already running finishes, and its result is
    dropped. Call it on the loop's thread (the loop is not thread-safe).
    """
    if loop.is_closed():
        raise RuntimeError("the loop is closed")
    # TODO(lab3): a Future of the loop (loop.create_future()), a Job(fn, args, future,
    #   pool.done_queue_for(loop)), and pool.submit(job). Then add a done-callback to the
    #   Future: functools.partial(_cancel_job, pool, job), which takes the job out of the
    #   queue if the Future was cancelled (it runs on the loop thread, like every
    #   done-callback). Return the Future.
    raise NotImplementedError("lab3: run_in_executor")


def _cancel_job(pool: ThreadPool, job: Job, future: Future[Any]) -> None:
    """Done-callback of run_in_executor's Future: if it was cancelled, the job must not run."""
    if future.cancelled():
        pool.cancel(job)
