"""Lab 1's grader helpers for the clients (nb.c, sockets.py): how each is run, traced and measured.

Both clients send a few MiB to slow_server, which reads them in small pieces, waits,
then echoes everything back. What is checked is the mechanism, seen from outside:

  /proc/PID/fdinfo  the socket has O_NONBLOCK while the client waits for the reply
  /proc/PID/schedstat  while waiting, the time the client was on a CPU or queued for one: a busy
                    loop is always one or the other (about 1 s per second, however busy the
                    machine is), a client asleep in poll is neither (about 0)
  strace            recv answers EAGAIN instead of blocking; poll / epoll_wait comes only after
                    an EAGAIN (try first, then wait), and every EAGAIN is followed by a wait;
                    sends take only part of the message, and still every byte comes back intact;
                    a wait gives up after the timeout it was given (ETIMEDOUT, TimeoutError)

Thresholds are ratios with wide margins, never speeds: they hold on a busy 2-core machine.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from grading.plugin import too_busy
from xray import proc, strace
from xray.strace import Call, Trace

TRACE = "network,read,write,poll,ppoll,epoll_wait,epoll_pwait,epoll_pwait2,select,pselect6,fcntl,ioctl"
WAITS = {"poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2", "select", "pselect6"}
RECVS = {"recvfrom", "recv", "read", "recvmsg"}
SENDS = {"sendto", "send", "write", "sendmsg"}

TRACED_DELAY = 0.6    # s the server waits before replying, in traced runs (strace slows everything)
MEASURED_DELAY = 2.0  # s the server waits in the CPU measurements


def expect(condition: object, message: str) -> None:
    """Fail with a message for the learner, without Python's assertion details."""
    if not condition:
        pytest.fail(message, pytrace=False)


def call(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args); an unwritten stub (NotImplementedError) fails the test, naming it."""
    try:
        return function(*args)
    except NotImplementedError as err:
        missing = str(err)
    pytest.fail(f"{missing}: not implemented yet", pytrace=False)   # outside `except`: no chained traceback


def c_client(impl, port: int, wait: str, *extra: str) -> list[str]:
    return [str(impl.bin("nb_client")), "--port", str(port), "--wait", wait, *extra]


def py_client(impl, port: int, *extra: str) -> list[str]:
    return impl.python("nonblock.client", "--port", str(port), *extra)


@dataclass
class SocketView:
    """What one traced client did with its TCP socket."""

    trace: Trace
    fd: int | None      # the client's socket, None when it never made one
    io: list[Call]      # send/recv/read/write on that socket, in time order
    waits: list[Call]   # poll/epoll_wait/select calls (the clients wait on nothing else)

    def eagains(self, names: set[str]) -> list[Call]:
        return [c for c in self.io if c.name in names and c.errno == "EAGAIN"]

    def why(self) -> str:
        """The client's last error line, or its exit status: the short reason for a failure line."""
        lines = [line for line in self.trace.stderr.splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit status {self.trace.returncode}"

    def story(self) -> str:
        """A few lines for a failure message: the exit status, the errors, the call counts."""
        counts = ", ".join(f"{n} {k}" for k, n in self.trace.summary().items())
        return (f"exit status {self.trace.returncode}; stderr: {self.trace.stderr.strip()[-400:]!r}\n"
                f"syscalls seen: {counts}")


def view(tr: Trace) -> SocketView:
    made = [c for c in tr.calls if c.name == "socket" and c.args.startswith("AF_INET") and (c.retval or -1) >= 0]
    if not made:
        return SocketView(tr, None, [], [c for c in tr.calls if c.name in WAITS])
    fd, since = made[0].retval, made[0].start
    io = [c for c in tr.calls if c.name in RECVS | SENDS and c.start >= since and c.args.startswith(f"{fd},")]
    return SocketView(tr, fd, io, [c for c in tr.calls if c.name in WAITS and c.start >= since])


_traces: dict[tuple[str, str], SocketView] = {}


def traced(key: str, impl, make: Callable[[], Trace]) -> SocketView:
    """Run make() once per implementation and reuse its trace (several tests read one run)."""
    if (str(impl.root), key) not in _traces:
        _traces[(str(impl.root), key)] = view(make())
    return _traces[(str(impl.root), key)]


def poll_run(impl, slow_server) -> SocketView:
    def make() -> Trace:
        port = slow_server(int(TRACED_DELAY * 1000))
        return strace.run(c_client(impl, port, "poll", "--size", str(2 << 20)), trace=TRACE, timeout=30)
    return traced("c-poll", impl, make)


def py_run(impl, slow_server) -> SocketView:
    def make() -> Trace:
        port = slow_server(int(TRACED_DELAY * 1000))
        return strace.run(py_client(impl, port, "--size", str(2 << 20)), trace=TRACE, timeout=30, env=impl.env())
    return traced("py", impl, make)


@contextmanager
def waiting(argv: list[str], env: dict[str, str] | None = None) -> Iterator[proc.Launched]:
    """Start a client; enter the block once it says it is waiting for the reply."""
    with proc.launch(argv, env=env, stderr=subprocess.PIPE) as client:
        seen: list[str] = []
        while True:
            try:
                line = client.readline(timeout=20)
            except TimeoutError:
                pytest.fail(f"the client never said it was waiting for the reply; it printed {seen}", pytrace=False)
            if not line:
                client.wait(5)
                errors = client.stderr.read().decode(errors="replace").strip() if client.stderr else ""
                last = errors.splitlines()[-1] if errors else f"exit status {client.returncode}"
                pytest.fail(f"the client ended before it waited for the reply: {last}\n"
                            f"It printed: {seen}\nIts errors: {errors[-600:]}", pytrace=False)
            seen.append(line)
            if "waiting for the reply" in line:
                break
        yield client


@dataclass
class Busy:
    """How a client spent a window of its wait, from the scheduler's own counts."""

    wall: float     # s the window lasted
    ran: float      # s the client was on a CPU
    queued: float   # s it was ready to run but waited for a CPU (other programs had them)
    sleeps: int     # times it went to sleep by itself (voluntary context switches)

    @property
    def share(self) -> float:
        """On a CPU or queued for one, per second: a busy loop is ~1.0 however loaded the machine, a sleeper ~0."""
        return (self.ran + self.queued) / self.wall

    def __str__(self) -> str:
        return f"it ran {self.ran:.2f} s and waited for a CPU {self.queued:.2f} s in {self.wall:.2f} s"


def sched_seconds(pid: int) -> tuple[float, float]:
    """(time on a CPU, time queued for a CPU) of pid's main thread so far, from /proc/PID/schedstat (ns)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            ran, queued = f.read().split()[:2]
    except FileNotFoundError:
        pytest.skip("cannot run here: this kernel has no /proc/PID/schedstat (CONFIG_SCHED_INFO)")
    return int(ran) / 1e9, int(queued) / 1e9


def voluntary_switches(pid: int) -> int:
    """How many times pid's main thread has gone to sleep by itself so far (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches:"))


def busy_while_waiting(client: proc.Launched, skip: float = 0.2, window: float = 1.0) -> Busy:
    """What the client did with a window of its wait for the reply.

    CPU time alone cannot tell a sleeping client from a spinning one that a busy machine
    starves: both get little CPU. The time spent queued for a CPU tells them apart, and so
    does the count of sleeps (a preempted spinner is switched out involuntarily, never voluntarily).
    """
    time.sleep(skip)
    (r0, q0), s0, t0 = sched_seconds(client.pid), voluntary_switches(client.pid), time.monotonic()
    time.sleep(window)
    (r1, q1), s1, t1 = sched_seconds(client.pid), voluntary_switches(client.pid), time.monotonic()
    if client.poll() is not None:
        pytest.fail(f"the client finished within {skip + window:.1f} s, while the server waits "
                    f"{MEASURED_DELAY:.0f} s before it replies: it did not wait for the reply", pytrace=False)
    return Busy(t1 - t0, r1 - r0, q1 - q0, s1 - s0)


def short_sends(v: SocketView) -> list[tuple[int, int]]:
    """(asked, taken) for every send that took fewer bytes than it was given."""
    result = []
    for c in v.io:
        if c.name not in ("sendto", "write") or c.retval is None or c.retval <= 0:
            continue
        asked = c.args.rsplit(", ", 4 if c.name == "sendto" else 1)[1]
        if asked.isdigit() and c.retval < int(asked):
            result.append((int(asked), c.retval))
    return result


def expect_partial_writes_verified(v: SocketView, who: str, advice: str) -> None:
    """The client got back exactly what it sent, and met a partial write on the way (else: advice)."""
    expect(v.trace.returncode == 0 and "echo verified" in v.trace.stdout,
           f"{who} did not get back exactly what it sent: {v.why()}\n{v.story()}")
    expect(short_sends(v), f"no send took fewer bytes than it was given, so this run never met a partial write: {advice}")


def eagains_not_waited_for(v: SocketView) -> list[Call]:
    """The EAGAIN answers after which the client called the socket again without waiting first."""
    events = sorted(v.io + v.waits, key=lambda c: c.start)
    return [c for c, after in zip(events, events[1:]) if c.errno == "EAGAIN" and after.name not in WAITS]


def expect_a_wait_after_each_eagain(v: SocketView, wait: str) -> None:
    """Each EAGAIN must be followed by a wait: calling again at once is the busy loop, even a short one."""
    eagain = v.eagains(RECVS | SENDS)
    again = eagains_not_waited_for(v)
    if again:
        by_call = ", ".join(f"{sum(c.name == name for c in again)} in {name}" for name in sorted({c.name for c in again}))
        pytest.fail(f"{len(again)} of the {len(eagain)} EAGAIN answers ({by_call}) were followed by "
                    f"another call on the socket without a {wait} in between: that is the busy loop. After EAGAIN, "
                    f"wait in {wait} until the socket is ready, then call again", pytrace=False)


def silence_seen(v: SocketView) -> float:
    """How long the client saw the server silent: from its first recv that said EAGAIN to the first that got data.

    Measured in the same run as the waits it judges, so a busy machine, which delays the
    client's first recv, shortens both alike. Too short to judge: the test says so.
    """
    recvs = [c for c in v.io if c.name in RECVS]
    first_eagain = next((c for c in recvs if c.errno == "EAGAIN"), None)
    if first_eagain is None:
        return TRACED_DELAY
    data = next((c for c in recvs if c.start > first_eagain.start and (c.retval or 0) > 0), None)
    seen = (data.start if data else recvs[-1].start) - first_eagain.start
    if seen < TRACED_DELAY / 4:
        too_busy(f"the client reached its first recv only {TRACED_DELAY - seen:.2f} s into the server's "
                 f"{TRACED_DELAY} s of silence")
    return seen


def expect_one_long_wait(waits: list[Call], v: SocketView, what: str) -> None:
    """The client slept through the server's silence in one wait, not in many short ones."""
    longest = max(w.duration or 0.0 for w in waits)
    silent = silence_seen(v)
    expect(longest >= silent / 2,
           f"the longest {what} lasted {longest:.3f} s, while the server was silent for {silent:.3f} s "
           f"(from the first EAGAIN to the data; {len(waits)} waits in all): the client should sleep until the "
           "socket is ready, in one wait given the whole timeout (no short timeout in a loop)")


def check_try_first_then_wait(v: SocketView, who: str) -> None:
    """The shared verdict on a "try first, then wait" client (the C poll one, the Python one)."""
    expect(v.fd is not None, f"{who} never created its socket: {v.why()}\n{v.story()}")
    expect(v.trace.returncode == 0, f"{who} did not get its echo back: {v.why()}\n{v.story()}")
    expect(v.eagains(RECVS), f"recv never answered EAGAIN while the server was silent for {TRACED_DELAY} s: "
                             f"is the socket non-blocking, and is recv tried before waiting?\n{v.story()}")
    expect(v.waits, f"no poll/epoll_wait call was seen: how does {who} wait for the socket?\n{v.story()}")
    for w in v.waits:
        before = [c for c in v.io if c.start < w.start]
        if not before or before[-1].errno != "EAGAIN":
            last = f"{before[-1].name} = {before[-1].result}" if before else "none at all"
            pytest.fail(f"{who} called {w.name} when its last socket call ({last}) had not said EAGAIN: "
                        "try the call first, and wait only when it would block", pytrace=False)
    expect_a_wait_after_each_eagain(v, "poll/epoll_wait")
    expect_one_long_wait(v.waits, v, "wait")
    expect_no_blocking_recv(v)


def expect_no_blocking_recv(v: SocketView) -> None:
    slow = [c for c in v.io if c.name in RECVS and (c.duration or 0.0) > TRACED_DELAY / 2]
    if slow:
        pytest.fail(f"{slow[0].name} blocked for {slow[0].duration:.3f} s: on a non-blocking socket it "
                    "should answer at once (with EAGAIN when there is nothing to read)", pytrace=False)
