"""Read a live process from /proc: its threads, its file descriptors, its CPU time.

Everything here reads files the kernel keeps up to date, so it costs nothing to the
process being watched (unlike strace, which stops it at every syscall).
"""
from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


# A thread's wait channel (/proc/PID/task/TID/wchan) is the kernel function it sleeps in; its
# name changes with kernel versions (futex_wait_queue_me, futex_wait_queue, futex_do_wait...),
# so these are matched by a part of the name.
WAITS = (("epoll", "epoll_wait"), ("futex", "a lock or a condition variable"),
         ("poll_schedule", "poll or select"), ("do_select", "select"), ("nanosleep", "a sleep"),
         ("pipe_read", "reading a pipe"), ("pipe_write", "writing a full pipe"),
         ("stream_read", "reading a socket"), ("sk_wait", "a socket"), ("wait_woken", "a socket"),
         ("read_events", "io_getevents"), ("io_cqring_wait", "io_uring_enter, waiting for completions"),
         ("do_wait", "waiting for a child process"), ("sigtimedwait", "sigwait"), ("sigsuspend", "sigsuspend"),
         ("pause", "pause"), ("io_schedule", "the disk"), ("ptrace_stop", "stopped by strace"))


def waiting_in(wchan: str) -> str:
    """'futex_do_wait (a lock or a condition variable)': a wait channel, and what it means when known."""
    meaning = next((words for part, words in WAITS if part in wchan), "")
    return f"{wchan} ({meaning})" if meaning else wchan


def family(pid: int) -> list[int]:
    """pid and its descendants, alive (from each process's parent in /proc/PID/stat)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = [pid] if pid in parents else []
    for member in found:   # grows as children are found
        found += sorted(child for child, parent in parents.items() if parent == member)
    return found


def where_they_wait(pids: Sequence[int], most: int = 8, threads_each: int = 6, skip: Sequence[int] = (),
                    names: Mapping[int, str] | None = None) -> str:
    """A line per process: what it runs, and each thread's name and state, with the kernel function it
    sleeps in (its wait channel) and what that means. skip: thread ids to leave out (the caller's own);
    names: better names than /proc's for some thread ids (Python's own thread names)."""
    lines = []
    for pid in list(pids)[:most]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = " ".join(f.read().decode(errors="replace").split())[:100]
            seen = []
            tids = [t for t in sorted(os.listdir(f"/proc/{pid}/task"), key=int) if int(t) not in skip]
            for tid in tids[:threads_each]:
                task = f"/proc/{pid}/task/{tid}"
                try:
                    with open(f"{task}/comm") as f:
                        comm = (names or {}).get(int(tid)) or f.read().strip()
                    with open(f"{task}/stat") as f:
                        state_letter = f.read().rsplit(")", 1)[1].split()[0]
                    with open(f"{task}/wchan") as f:
                        wchan = f.read().strip()
                except OSError:
                    continue   # the thread ended while we looked
                if state_letter == "R" or wchan in ("", "0"):
                    seen.append(f"{comm}: running (on a CPU or waiting for one)" if state_letter == "R"
                                else f"{comm}: state {state_letter}")
                else:
                    seen.append(f"{comm}: waiting in {waiting_in(wchan)}")
            if len(tids) > threads_each:
                seen.append(f"… and {len(tids) - threads_each} more threads")
        except OSError:
            continue   # the process ended while we looked
        lines.append(f"    pid {pid} `{argv}`: " + "; ".join(seen))
    if len(pids) > most:
        lines.append(f"    … and {len(pids) - most} more processes")
    return "\n".join(lines)


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
