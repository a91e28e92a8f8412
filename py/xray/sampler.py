"""Watch a live process's threads come and go by sampling /proc/PID/task, as it runs.

strace sees the threads a program creates with clone/clone3, but not the ones the kernel
creates *for* it: io_uring's workers (`iou-wrk-PID`) and its submission-queue poller
(`iou-sqp-PID`) appear in /proc/PID/task like any thread, yet no syscall of the program
made them. Sampling /proc is the way to see those, and it costs the program nothing:

    with ThreadSampler(pid) as sampler:      # a background thread reads /proc/PID/task
        ...                                  # the program runs
    sampler.kernel_workers()                 # [Seen(tid=..., name='iou-wrk-4242', ...)]

A thread that lives for less than one sampling interval may be missed: use strace's
clone calls to *count* user threads, and the sampler to *name* them and to find the
kernel's.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType

# Threads the kernel creates inside a process on its behalf (io_uring: workers and SQPOLL).
KERNEL_WORKER_PREFIXES = ("iou-wrk-", "iou-sqp-")


def is_kernel_worker(name: str) -> bool:
    """True for a thread the kernel made for the process (iou-wrk-*, iou-sqp-*)."""
    return name.startswith(KERNEL_WORKER_PREFIXES)


@dataclass
class Seen:
    """One thread as the sampler saw it."""

    tid: int
    name: str       # /proc/PID/task/TID/comm when first seen
    first: float    # time.time() of the first sample that saw it (same clock as strace -ttt)
    last: float     # time.time() of the last sample that saw it


class ThreadSampler:
    """Sample /proc/PID/task every `interval` seconds in a background thread until stop()."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self.pid = pid
        self.interval = interval
        self.seen: dict[int, Seen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xray-sampler", daemon=True)

    def start(self) -> ThreadSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (after one last sample); safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> ThreadSampler:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()   # read first: the last sample comes after stop()
            if not self.sample():
                return                       # the process is gone
            if stopping:
                return
            self._stop.wait(self.interval)

    def sample(self) -> bool:
        """Take one sample now; False when the process no longer exists."""
        now = time.time()
        try:
            entries = os.listdir(f"/proc/{self.pid}/task")
        except (FileNotFoundError, ProcessLookupError):
            return False
        for entry in entries:
            tid = int(entry)
            known = self.seen.get(tid)
            if known is not None:
                known.last = now
                continue
            try:
                # Only a new thread costs a read of its name: known ones are just stamped.
                with open(f"/proc/{self.pid}/task/{entry}/comm") as f:
                    name = f.read().strip()
            except (FileNotFoundError, ProcessLookupError):
                continue   # it exited between listdir and open
            self.seen[tid] = Seen(tid, name, now, now)
        return True

    def threads(self) -> list[Seen]:
        """Every thread seen, in the order they were first seen."""
        return sorted(self.seen.values(), key=lambda s: (s.first, s.tid))

    def kernel_workers(self) -> list[Seen]:
        """The kernel's threads for this process (io_uring workers and pollers)."""
        return [s for s in self.threads() if is_kernel_worker(s.name)]

    def user_threads(self) -> list[Seen]:
        """The threads the program created itself, its main thread excluded."""
        return [s for s in self.threads() if s.tid != self.pid and not is_kernel_worker(s.name)]
