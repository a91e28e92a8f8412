"""Lab 7's grader helpers: uring_cat (grading.programs.FileProgram), its strace, its threads at the pause.

uring_cat runs in the labs' data directory with the file's short name (strace's openat then
names it whatever the checkout's path). Before anything runs, the machine is asked
(xray.doctor) whether io_uring works here at all: Docker's default seccomp profile and
kernel.io_uring_disabled forbid it, and then every test is skipped with that reason,
never passed. O_DIRECT is asked for the same way.
"""
from __future__ import annotations

import os
import select
import subprocess
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from grading.programs import DataFile, FileProgram
from xray import proc, strace
from xray.doctor import check_io_uring, check_o_direct, require

APIS = ["raw", "liburing"]
BLOCKS = -(-(4 * 1024 * 1024 + 12345) // 65536)   # 64 KiB requests the data file takes: 65
TRACE = ("openat,io_uring_setup,io_uring_enter,io_uring_register,eventfd2,epoll_wait,epoll_pwait,"
         "read,pread64,write,pwrite64")


def require_uring(direct: bool = True) -> None:
    """Raise xray.Unavailable (a skip that says why) where io_uring is blocked, or O_DIRECT refused."""
    require(check_io_uring, *((check_o_direct,) if direct else ()))


def require_buffered_or_direct(args: Sequence[str]) -> None:
    """URING_CAT.require: io_uring always, O_DIRECT unless it reads --buffered."""
    require_uring("--buffered" not in args)


URING_CAT = FileProgram("uring_cat", TRACE, require=require_buffered_or_direct,
                        misplaced="the SQE's addr or off, or a CQE's user_data matched to the wrong request",
                        # where its threads waited says io_cqring_wait: io_uring_enter waiting for completions
                        advice="Waiting in io_uring_enter for completions: of SQEs the kernel never saw?")


def check_copy(path: Path, data: DataFile, what: str) -> None:
    """The copy uring_cat --write made is the data file, byte for byte."""
    assert path.exists(), f"{what}: {path.name} was not written"
    copy = path.read_bytes()
    assert len(copy) == data.size and zlib.crc32(copy) == data.crc32, (
        f"{what}: the copy has {len(copy)} bytes, crc32 {zlib.crc32(copy):08x}; the file has {data.size}, "
        f"{data.crc32:08x}: a write went to the wrong offset, or was short and not queued again")


def enters(tr: strace.Trace) -> list[strace.Call]:
    return tr.named("io_uring_enter")


# --- a program paused at its end, for /proc ---------------------------------------------------

@dataclass
class Pause:
    """What was seen of uring_cat --pause while it waited on stdin, its ring still open."""

    pid: int = 0                                     # known once paused (the program may end before)
    lines: list[str] = field(default_factory=list)   # stdout up to the "paused:" line
    threads: list[proc.Thread] = field(default_factory=list)   # /proc/PID/task at the pause
    reached: bool = False

    def names(self) -> list[str]:
        return [t.name for t in self.threads]

    def kernel(self, prefix: str) -> list[str]:
        return [name for name in self.names() if name.startswith(prefix)]


def wait_for_pause(pid: Callable[[], int], readline: Callable[[float], str], timeout: float = 20) -> Pause:
    """Read stdout until `paused:` (or its end: the program failed) and look at /proc/PID/task then.

    pid is asked for only at the pause: under strace it is found in /proc, which fails for a
    program that has already ended.
    """
    seen = Pause()
    while True:
        try:
            line = readline(timeout)
        except TimeoutError:
            return seen
        if not line:
            return seen        # it ended before the pause: the caller reports why
        seen.lines.append(line)
        if line.startswith("paused:"):
            seen.reached = True
            seen.pid = pid()
            seen.threads = proc.threads(seen.pid)
            return seen


def resume(stdin: IO[bytes] | None) -> None:
    """Press Enter: the paused program closes its ring and exits (communicate() closes the pipe)."""
    if stdin is not None and not stdin.closed:
        try:
            stdin.write(b"\n")
            stdin.flush()
        except BrokenPipeError:
            pass   # it had already ended


def thread_sched(pid: int, tid: int) -> tuple[float, float]:
    """Seconds one thread spent on a CPU and waiting for one (runnable), from /proc/PID/task/TID/schedstat.

    Their sum is the time it *wanted* a CPU: a spinning thread wants it all the time, however
    busy the machine is (then it mostly waits); a sleeping one wants none.
    """
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        on_cpu, waiting = f.read().split()[:2]
    return int(on_cpu) / 1e9, int(waiting) / 1e9


# --- requests kept in flight on purpose: writes into a pipe that nobody reads yet -------------

BLOCK = 65536        # uring_cat's default request size, and what a pipe holds (16 pages)


def settled(p: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Let the program react to what the test did: wait until it sleeps again, or has ended."""
    proc.wait_until(lambda: p.poll() is not None or proc.state(p.pid) == "S", timeout=timeout)
    time.sleep(0.1)   # a program about to leave gets the time to do it (errs towards passing)


def read_pipe_slowly(p: subprocess.Popen[bytes], reader: int, timeout: float = 60) -> int:
    """Read the pipe to its end, one pipeful at a time, letting the program react after each.

    Each read makes room for exactly one more waiting write (the pipe holds one request),
    so a program that gives up waiting too early has ended before the next pipeful comes.
    Returns the bytes that came out. Under load it only gets slower: it never reads ahead.
    """
    piped, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        settled(p)
        ready, _, _ = select.select([reader], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(reader, 1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            return piped    # the program closed its end: it has ended
        piped += len(chunk)
    raise AssertionError(f"the pipe did not reach its end in {timeout:g} s ({piped} bytes came out): uring_cat "
                         "neither ended nor kept writing")
