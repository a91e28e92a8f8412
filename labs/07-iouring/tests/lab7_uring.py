"""Lab 7's grader helpers: run uring_cat, read its report, its strace, its threads at the pause.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from grading import programs
from grading.plugin import Impl
from grading.programs import DataFile, Report, parse_report
from xray import proc, strace
from xray.doctor import check_io_uring, check_o_direct, require

APIS = ["raw", "liburing"]
BLOCKS = -(-(4 * 1024 * 1024 + 12345) // 65536)   # 64 KiB requests the data file takes: 65
TRACE = ("openat,io_uring_setup,io_uring_enter,io_uring_register,eventfd2,epoll_wait,epoll_pwait,"
         "read,pread64,write,pwrite64")


def require_uring(direct: bool = True) -> None:
    """Raise xray.Unavailable (a skip that says why) where io_uring is blocked, or O_DIRECT refused."""
    require(check_io_uring, *((check_o_direct,) if direct else ()))


def cat_argv(impl: Impl, data: DataFile, *args: str) -> list[str]:
    return [str(impl.bin("uring_cat")), data.name, *args]


def run(impl: Impl, data: DataFile, *args: str, timeout: float = 30) -> programs.Ran:
    """uring_cat on data, in the data directory, to the end; if it does not end, the failure says where
    its threads waited (io_cqring_wait: io_uring_enter waiting for completions)."""
    require_uring("--buffered" not in args)
    return programs.run(cat_argv(impl, data, *args), timeout, cwd=data.dir,
                        advice="Waiting in io_uring_enter for completions: of SQEs the kernel never saw?")


def traced(impl: Impl, data: DataFile, *args: str) -> strace.Trace:
    """uring_cat on data under strace -f, to the end."""
    require_uring("--buffered" not in args)
    return strace.run(cat_argv(impl, data, *args), trace=TRACE, cwd=data.dir, timeout=40)


def said(out: programs.Ran | subprocess.CompletedProcess[str] | strace.Trace) -> str:
    """What the program said, for a failure message: its last stderr line first, then everything."""
    lines = out.stderr.strip().splitlines()
    last = lines[-1] if lines else "(nothing on stderr)"
    if isinstance(out, strace.Trace) and out.timed_out:
        last = f"it did not finish, and was stopped; where its threads waited:\n{out.stuck}\n{last}"
    return f"{last} [exit code {out.returncode}]\nstdout:\n{out.stdout.strip()}\nstderr:\n{out.stderr.strip()}"


def check_read(out: programs.Ran | subprocess.CompletedProcess[str] | strace.Trace, data: DataFile,
               what: str) -> Report:
    """The program ended well and read every byte of data (size and CRC-32): its report."""
    assert out.returncode == 0, f"{what} failed: {said(out)}"
    report = parse_report(out.stdout)
    size = report.count("read", r"^(\d+) bytes")
    assert size == data.size, (f"{what}: {size} bytes read, the file has {data.size}: a short read at the end of "
                               "the file counts what it returned, once")
    assert report.crc() == data.crc32, (
        f"{what}: crc32 {report.crc():08x}, a plain read gives {data.crc32:08x}: some block landed in the wrong "
        "place (the SQE's addr or off, or a CQE's user_data matched to the wrong request)")
    return report


def check_copy(path: Path, data: DataFile, what: str) -> None:
    """The copy uring_cat --write made is the data file, byte for byte."""
    assert path.exists(), f"{what}: {path.name} was not written"
    copy = path.read_bytes()
    assert len(copy) == data.size and zlib.crc32(copy) == data.crc32, (
        f"{what}: the copy has {len(copy)} bytes, crc32 {zlib.crc32(copy):08x}; the file has {data.size}, "
        f"{data.crc32:08x}: a write went to the wrong offset, or was short and not queued again")


def enters(tr: strace.Trace) -> list[strace.Call]:
    return tr.named("io_uring_enter")


def file_reads(tr: strace.Trace, data: DataFile) -> list[strace.Call]:
    """read/pread64 calls on the data file's descriptor, after it was opened."""
    opens = [c for c in tr.named("openat") if f'"{data.name}"' in c.args and (c.retval or -1) >= 0]
    if not opens:
        return []
    fds = {c.retval for c in opens}
    return [c for c in tr.named("read", "pread64") if c.start >= opens[0].start and c.fd in fds]


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
