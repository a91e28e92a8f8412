"""Run a program under `strace -f` and turn the log into data: calls, threads, durations.

The program is launched under strace (never attached afterwards), so its first
syscall and every thread it creates are seen:

    tr = strace.run(["./nb_client", "--wait", "poll"], trace="network,poll")
    [c for c in tr.named("recvfrom") if c.errno == "EAGAIN"]   # the "would block" answers
    tr.threads_created                                          # tids of hidden threads

Each line strace writes with -f -ttt -T looks like

    4242 1700000000.123456 recvfrom(3, 0x7ffd, 4096, 0, NULL, NULL) = -1 EAGAIN (Resource ...) <0.000009>

and a call that blocks while another thread runs is split in two:

    4242 1700000000.100000 epoll_wait(4,  <unfinished ...>
    4243 1700000000.150000 pread64(5, ...) = 4096 <0.000020>
    4242 1700000000.200000 <... epoll_wait resumed>[...], 8, -1) = 1 <0.100012>
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xray import Unavailable, causes
from xray.proc import LineReader, family, where_they_wait

# Always traced, whatever the caller asks for: without them we could not tell threads apart.
PROCESS_CALLS = "clone,clone3,fork,vfork,execve"

_LINE = re.compile(r"^(?P<tid>\d+)\s+(?P<time>\d+\.\d+)\s+(?P<body>.*)$")
_DURATION = re.compile(r"\s<(?P<seconds>\d+\.\d+)>$")
_RESULT = re.compile(r"^(?P<value>-?\d+|0x[0-9a-f]+|\?)(?:\s+(?P<errno>E[A-Z0-9_]+)\b.*)?", re.S)


@dataclass
class Call:
    """One system call made by one thread."""

    tid: int
    name: str
    args: str              # as strace printed them, without the parentheses
    result: str            # as printed after '= ', e.g. "-1 EAGAIN (Resource temporarily unavailable)"
    start: float           # seconds since the epoch, when the call was entered
    duration: float | None  # seconds spent inside the call (None when the program died inside it)

    @property
    def retval(self) -> int | None:
        m = _RESULT.match(self.result)
        if m is None or m.group("value") == "?":
            return None
        return int(m.group("value"), 0)

    @property
    def errno(self) -> str | None:
        """'EAGAIN', 'EINTR', ... when the call failed; None when it succeeded."""
        m = _RESULT.match(self.result)
        return m.group("errno") if m else None

    @property
    def end(self) -> float:
        return self.start + (self.duration or 0.0)

    def arg(self, i: int) -> str:
        r"""The i-th argument as strace printed it; '' when there are fewer.

        Split at top-level commas only: `epoll_wait(4, [{events=EPOLLIN, data=...}], 64, -1)`
        has four arguments, whatever the commas inside its brackets and braces. A quoted buffer
        is skipped whole: `read(3, "a,]\"(", 5)` has three, whatever bytes the buffer held
        (strace escapes a quote inside it as \" and a backslash as \\).
        """
        args, depth, current = [], 0, ""
        in_string = escaped = False
        for ch in self.args:
            if in_string:
                in_string = escaped or ch != '"'
                escaped = not escaped and ch == "\\"
            elif ch == '"':
                in_string = True
            elif ch in "[{(":
                depth += 1
            elif ch in "]})":
                depth -= 1
            if ch == "," and depth == 0 and not in_string:
                args.append(current.strip())
                current = ""
            else:
                current += ch
        args.append(current.strip())
        return args[i] if i < len(args) else ""

    @property
    def fd(self) -> int | None:
        """The first argument when it is a number: the fd of read, pread64, close, recvfrom..."""
        first = self.arg(0)
        return int(first) if first.isdigit() else None


@dataclass
class Trace:
    """What one traced run did."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    calls: list[Call] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)       # every tid seen, processes included
    main_tid: int = 0                                    # the program's own pid
    threads_created: list[int] = field(default_factory=list)    # clone(CLONE_THREAD) children
    processes_created: list[int] = field(default_factory=list)  # fork/vfork/clone without CLONE_THREAD
    timed_out: bool = False                              # finish() had to stop the program
    stuck: str = ""                                      # ... and where its threads waited then (proc)

    def named(self, *names: str) -> list[Call]:
        wanted = set(names)
        return [c for c in self.calls if c.name in wanted]

    def on_thread(self, tid: int) -> list[Call]:
        return [c for c in self.calls if c.tid == tid]

    def summary(self) -> dict[str, int]:
        """Call counts by name, most frequent first: a quick look for a failure message."""
        counts: dict[str, int] = {}
        for c in self.calls:
            counts[c.name] = counts.get(c.name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def parse(text: str) -> tuple[list[Call], set[int]]:
    """Parse an `strace -f -ttt -T` log into calls (in start order) and the tids seen."""
    calls: list[Call] = []
    tids: set[int] = set()
    pending: dict[int, tuple[float, str]] = {}  # tid -> (start, "name(args-so-far")
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        tid, start, body = int(m.group("tid")), float(m.group("time")), m.group("body")
        tids.add(tid)
        if body.startswith(("---", "+++")):  # a signal delivered, or the thread exited
            continue
        if body.startswith("<... "):
            # "<... epoll_wait resumed>rest": glue the rest onto the unfinished half.
            head = pending.pop(tid, None)
            if head is None:
                continue  # resumed a call that began before tracing did
            start, body = head[0], head[1] + body.split(">", 1)[1]
        elif body.endswith("<unfinished ...>"):
            pending[tid] = (start, body[: -len("<unfinished ...>")].rstrip())
            continue
        call = _parse_call(tid, start, body)
        if call is not None:
            calls.append(call)
    # Calls the program was still inside when it ended: known start, unknown duration.
    for tid, (start, body) in pending.items():
        name = body.split("(", 1)[0]
        calls.append(Call(tid, name, body[len(name) + 1:], "?", start, None))
    calls.sort(key=lambda c: c.start)
    return calls, tids


def _parse_call(tid: int, start: float, body: str) -> Call | None:
    duration = None
    m = _DURATION.search(body)
    if m is not None:
        duration = float(m.group("seconds"))
        body = body[: m.start()]
    call_text, sep, result = body.rpartition(" = ")
    if not sep or "(" not in call_text:
        return None
    name, args = call_text.split("(", 1)
    return Call(tid, name, args.rstrip().removesuffix(")"), result.strip(), start, duration)


def _created(calls: list[Call]) -> tuple[list[int], list[int]]:
    """Split the children made by clone/clone3/fork/vfork into threads and processes."""
    threads: list[int] = []
    processes: list[int] = []
    for c in calls:
        if c.name not in ("clone", "clone3", "fork", "vfork") or not c.retval or c.retval < 0:
            continue
        (threads if "CLONE_THREAD" in c.args else processes).append(c.retval)
    return threads, processes


@functools.cache
def check() -> None:
    """Raise Unavailable when strace cannot trace a program on this machine."""
    if shutil.which("strace") is None:
        raise Unavailable(causes.not_found("strace", "strace"))
    proc = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "--", "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        said = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        cause = causes.ptrace_denied() or ("ptrace was refused and nothing in /proc says why; in a container, "
                                           "start it with --cap-add=SYS_PTRACE")
        raise Unavailable(f"strace cannot trace here: {cause} (strace said: {said})")


def strace_argv(log: Path, trace: str | None) -> list[str]:
    argv = ["strace", "-f", "-qq", "-ttt", "-T", "-s", "64", "-o", str(log)]
    if trace:
        # --seccomp-bpf lets the untraced calls run at full speed (strace >= 5.3).
        argv += ["--seccomp-bpf", "-e", f"trace={_expand(trace)},{PROCESS_CALLS}"]
    return argv + ["--"]


def _expand(trace: str) -> str:
    """'network,poll,read' -> '%network,poll,read' ('network' and friends are strace's classes)."""
    classes = {"network", "file", "process", "signal", "ipc", "desc", "memory"}
    return ",".join(f"%{t}" if t in classes else t for t in trace.split(",") if t)


class Running:
    """A program running under strace; see launch()."""

    def __init__(self, argv: Sequence[str], trace: str | None, **popen: Any):
        check()
        self.argv = list(argv)
        self._dir = tempfile.TemporaryDirectory(prefix="xray-strace-")
        self._log = Path(self._dir.name) / "strace.log"
        self.process = subprocess.Popen(strace_argv(self._log, trace) + self.argv, **popen)
        self._lines = LineReader(self.process.stdout)
        self._pid: int | None = None
        self.timed_out = False
        self.stuck = ""
        self.trace: Trace | None = None

    @property
    def pid(self) -> int:
        """The traced program's pid, found through /proc.

        strace forks a few short-lived children of its own (feature probes) before the
        program, so the program is the child whose command line is exactly argv: strace
        execs it verbatim.
        """
        if self._pid is None:
            wanted = "\0".join(self.argv) + "\0"
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            deadline = time.monotonic() + 5
            while self._pid is None:
                for child in (children.read_text().split() if children.exists() else []):
                    try:
                        if Path(f"/proc/{child}/cmdline").read_text() == wanted:
                            self._pid = int(child)
                    except OSError:
                        continue  # it exited while we looked: one of strace's probes
                if self._pid is not None:
                    break
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"strace did not start {self.argv[0]} (or it ended at once)")
                time.sleep(0.005)
        return self._pid

    def readline(self, timeout: float = 5.0) -> str:
        return self._lines.readline(timeout)

    def terminate(self) -> None:
        """Ask the traced program (not strace) to stop, with SIGTERM."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except (ProcessLookupError, RuntimeError):
            pass

    def finish(self, timeout: float = 10.0) -> Trace:
        """Wait for the program to exit (stopping it after timeout), then parse the log."""
        # communicate() drains stdout and stderr while waiting, so a chatty program cannot
        # fill a pipe and hang; what readline() already took is in the LineReader's buffer.
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            with contextlib.suppress(RuntimeError):   # the program's pid is unknown if it never started
                self.stuck = where_they_wait(family(self.pid))
            self.terminate()
            try:
                out, err = self.process.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except (ProcessLookupError, RuntimeError):
                    pass
                self.process.kill()
                out, err = self.process.communicate()
        stdout = self._lines.rest() + (out or b"").decode(errors="replace")
        stderr = (err or b"").decode(errors="replace")
        calls, tids = parse(self._log.read_text(errors="replace") if self._log.exists() else "")
        threads_created, processes_created = _created(calls)
        tids.update(threads_created, processes_created)  # seen even if they made no traced call
        main_tid = calls[0].tid if calls else (self._pid or 0)
        self.trace = Trace(self.argv, self.process.returncode, stdout, stderr, calls, tids, main_tid,
                           threads_created, processes_created, self.timed_out, self.stuck)
        return self.trace

    def close(self) -> None:
        if self.trace is None:
            self.finish(timeout=0)
        for stream in (self.process.stdout, self.process.stderr, self.process.stdin):
            if stream is not None:
                stream.close()
        self._dir.cleanup()


@contextmanager
def launch(argv: Sequence[str], *, trace: str | None = None, stdout: int | None = subprocess.PIPE,
           stderr: int | None = subprocess.PIPE, **popen: Any) -> Iterator[Running]:
    """Start argv under strace -f. In the block: run.pid, run.readline(), /proc; then run.finish()."""
    run = Running(argv, trace, stdout=stdout, stderr=stderr, **popen)
    try:
        yield run
    finally:
        run.close()


def run(argv: Sequence[str], *, trace: str | None = None, timeout: float = 20.0,
        input: bytes | None = None, **popen: Any) -> Trace:
    """Run argv to the end under strace -f and return its Trace.

    trace: strace's filter ("network,poll,read"); strace's classes such as network or
    file may be named without their '%'. Thread creation is always traced.
    """
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    with launch(argv, trace=trace, stdin=stdin, **popen) as running:
        if input is not None:
            assert running.process.stdin is not None
            running.process.stdin.write(input)
            running.process.stdin.close()
        return running.finish(timeout)
