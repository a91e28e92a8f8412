"""Read a live process from /proc: its threads, its file descriptors, its CPU time.

Everything here reads files the kernel keeps up to date, so it costs nothing to the
process being watched (unlike strace, which stops it at every syscall).
"""
from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # units of utime/stime in /proc/PID/stat


@dataclass(frozen=True)
class Thread:
    tid: int
    name: str  # /proc/PID/task/TID/comm: "python3", "iou-wrk-1234", "asyncio_0", ...


def threads(pid: int) -> list[Thread]:
    """The threads of pid, main thread first. Threads may come and go while we read."""
    result = []
    for entry in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            with open(f"/proc/{pid}/task/{entry}/comm") as f:
                result.append(Thread(int(entry), f.read().strip()))
        except FileNotFoundError:  # it exited between listdir and open
            continue
    return result


def fds(pid: int) -> dict[int, str]:
    """Map each open fd of pid to what it points at ("socket:[123]", "/tmp/x", "anon_inode:[eventfd]")."""
    result = {}
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            result[int(entry)] = os.readlink(f"/proc/{pid}/fd/{entry}")
        except FileNotFoundError:
            continue
    return result


def fdinfo(pid: int, fd: int) -> dict[str, str]:
    """/proc/PID/fdinfo/FD as a dict: pos, flags (octal text), mnt_id, and per-type fields."""
    info: dict[str, str] = {}
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    return info


def fd_flags(pid: int, fd: int) -> int:
    """The open-file flags of pid's fd (test with os.O_NONBLOCK, os.O_DIRECT, ...)."""
    return int(fdinfo(pid, fd)["flags"], 8)


def sockets(pid: int) -> list[int]:
    """The fds of pid that are sockets."""
    return sorted(fd for fd, target in fds(pid).items() if target.startswith("socket:"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by all threads of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def state(pid: int) -> str:
    """One letter from /proc/PID/stat: R running, S sleeping, D disk sleep, Z zombie, ..."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll predicate until it is true or timeout passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class LineReader:
    """Read lines from a pipe with a timeout, without ever blocking the caller forever."""

    def __init__(self, stream: IO[bytes] | None):
        self._stream = stream
        self._buffer = b""
        self._eof = stream is None

    def readline(self, timeout: float = 5.0) -> str:
        """The next line without its newline; '' at end of file.

        Raises TimeoutError when no full line arrives in time (the program is stuck, or
        did not print what the test expected).
        """
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer and not self._eof:
            assert self._stream is not None
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._stream], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"no output line within {timeout:g} s (seen so far: {self._buffer[-200:]!r})")
            chunk = os.read(self._stream.fileno(), 65536)
            self._eof = not chunk
            self._buffer += chunk
        line, sep, rest = self._buffer.partition(b"\n")
        self._buffer = rest
        return line.decode(errors="replace") if (sep or line) else ""

    def rest(self) -> str:
        """What was read from the pipe but not yet returned as a line."""
        text, self._buffer = self._buffer.decode(errors="replace"), b""
        return text


class Launched(subprocess.Popen[bytes]):
    """A Popen with readline(timeout) on its stdout."""

    def __init__(self, argv: Sequence[str], **kwargs: Any):
        super().__init__(argv, **kwargs)
        self.lines = LineReader(self.stdout)

    def readline(self, timeout: float = 5.0) -> str:
        return self.lines.readline(timeout)


def stop(process: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after grace seconds; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def launch(argv: Sequence[str], *, stdout: int | None = subprocess.PIPE, **kwargs: Any) -> Iterator[Launched]:
    """Start argv; the block may read /proc/<p.pid>; at the end the process is stopped and reaped."""
    process = Launched(argv, stdout=stdout, **kwargs)
    try:
        yield process
    finally:
        stop(process)
        for stream in (process.stdout, process.stderr, process.stdin):
            if stream is not None:
                stream.close()
