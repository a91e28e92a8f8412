"""Lab 1 graders: the C client (nb.c), then the Python client (sockets.py), on a non-blocking socket.

Both clients send a few MiB to slow_server, which reads them in small pieces, waits,
then echoes everything back. What is checked is the mechanism, seen from outside:

  /proc/PID/fdinfo  the socket has O_NONBLOCK while the client waits for the reply
  /proc/PID/stat    CPU time while waiting: a busy loop burns about 1 s per second, poll about 0
  strace            recv answers EAGAIN instead of blocking; poll / epoll_wait comes only after
                    an EAGAIN (try first, then wait); sends take only part of the message, and
                    still every byte comes back intact

Thresholds are ratios with wide margins, never speeds: they hold on a busy 2-core machine.
"""
from __future__ import annotations

import os
import re
import selectors
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from xray import proc, strace
from xray.strace import Call, Trace

TRACE = "network,read,write,poll,ppoll,epoll_wait,epoll_pwait,epoll_pwait2,select,pselect6,fcntl,ioctl"
WAITS = {"poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2", "select", "pselect6"}
RECVS = {"recvfrom", "recv", "read", "recvmsg"}
SENDS = {"sendto", "send", "write", "sendmsg"}

TRACED_DELAY = 0.6    # s the server waits before replying, in traced runs (strace slows everything)
MEASURED_DELAY = 2.0  # s the server waits in the CPU measurements


# ---------------------------------------------------------------- helpers

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


def cpu_share(client: proc.Launched, skip: float = 0.2, window: float = 1.0) -> float:
    """CPU seconds per wall-clock second the client uses during a window of its wait."""
    time.sleep(skip)
    c0, t0 = proc.cpu_seconds(client.pid), time.monotonic()
    time.sleep(window)
    c1, t1 = proc.cpu_seconds(client.pid), time.monotonic()
    if client.poll() is not None:
        pytest.fail(f"the client finished within {skip + window:.1f} s, while the server waits "
                    f"{MEASURED_DELAY:.0f} s before it replies: it did not wait for the reply", pytrace=False)
    return (c1 - c0) / (t1 - t0)


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
    eagain = v.eagains(RECVS | SENDS)
    expect(len(eagain) <= len(v.waits) + 3,
           f"{len(eagain)} EAGAIN answers but only {len(v.waits)} waits: after EAGAIN, wait before calling again")
    longest = max(w.duration or 0.0 for w in v.waits)
    expect(longest >= TRACED_DELAY / 2,
           f"the longest wait lasted {longest:.3f} s, while the server was silent for {TRACED_DELAY} s: "
           "the client should sleep until the socket is ready (no short timeout in a loop)")
    expect_no_blocking_recv(v)


def expect_no_blocking_recv(v: SocketView) -> None:
    slow = [c for c in v.io if c.name in RECVS and (c.duration or 0.0) > TRACED_DELAY / 2]
    if slow:
        pytest.fail(f"{slow[0].name} blocked for {slow[0].duration:.3f} s: on a non-blocking socket it "
                    "should answer at once (with EAGAIN when there is nothing to read)", pytrace=False)


# ---------------------------------------------------------------- C: nb.c

@pytest.mark.hint("nonblocking-flag")
def test_c_sets_o_nonblock(impl, slow_server):
    """nb_set_nonblocking turns O_NONBLOCK on with fcntl, keeping the other flags."""
    port = slow_server(0)
    v = view(strace.run(c_client(impl, port, "poll", "--size", "4096"), trace="network,fcntl,ioctl", timeout=20))
    expect(v.fd is not None, f"nb_client never created its socket: {v.why()}\n{v.story()}")
    mine = [c for c in v.trace.calls if c.name in ("fcntl", "fcntl64", "ioctl") and c.args.startswith(f"{v.fd},")]
    setfl = [c for c in mine if "F_SETFL" in c.args and "O_NONBLOCK" in c.args and c.retval == 0]
    fionbio = [c for c in mine if "FIONBIO" in c.args and "[1]" in c.args and c.retval == 0]
    expect(setfl or fionbio, f"no fcntl({v.fd}, F_SETFL, ...|O_NONBLOCK) on the socket: "
                             f"nb_set_nonblocking did not make it non-blocking.\n{v.story()}")
    if setfl:
        # F_SETFL replaces the status flags: what F_GETFL returned must be in what F_SETFL sets.
        getfl = [c for c in mine if "F_GETFL" in c.args and c.start < setfl[0].start]
        expect(getfl, "F_SETFL replaces all the status flags: read them first with F_GETFL, then add O_NONBLOCK")
        had = re.search(r"\(flags ([^)]*)\)", getfl[-1].result)
        dropped = set(had.group(1).split("|") if had else []) - set(setfl[0].args.split(", ", 2)[-1].split("|"))
        expect(not dropped, f"F_SETFL dropped the flags {'|'.join(sorted(dropped))} that F_GETFL returned: "
                            "set the old flags | O_NONBLOCK")


@pytest.mark.hint("spin-loop")
def test_c_spin_recv_gets_eagain(impl, slow_server):
    """The spin version calls recv again and again: strace sees a stream of EAGAIN, no poll, no blocking."""
    port = slow_server(int(TRACED_DELAY * 1000))
    v = view(strace.run(c_client(impl, port, "spin", "--size", str(256 << 10)), trace=TRACE, timeout=30))
    expect(v.trace.returncode == 0, f"nb_client --wait spin did not get its echo back: {v.why()}\n{v.story()}")
    eagain = v.eagains(RECVS)
    expect(len(eagain) >= 20, f"recv answered EAGAIN {len(eagain)} times while the server was silent for "
                              f"{TRACED_DELAY} s: a busy loop calls recv again at once, many times.\n{v.story()}")
    expect(not v.waits, f"the spin version called {v.waits[0].name if v.waits else ''}: it must not wait, "
                        "only call again (that is its point: compare it with the poll version)")
    expect_no_blocking_recv(v)


@pytest.mark.hint("spin-loop")
def test_c_spin_burns_cpu_while_waiting(impl, slow_server):
    """While the busy loop waits for the reply, it uses about one CPU second per second."""
    port = slow_server(int(MEASURED_DELAY * 1000))
    with waiting(c_client(impl, port, "spin")) as client:
        share = cpu_share(client)
    expect(share >= 0.3, f"the spinning client used {share:.2f} CPU seconds per second while it waited: "
                         "a busy loop keeps a core busy (close to 1.0). Does it sleep or poll?")


@pytest.mark.hint("nonblocking-flag")
def test_c_socket_nonblocking_while_waiting(impl, slow_server):
    """/proc/PID/fdinfo shows O_NONBLOCK on the client's socket while it waits for the server."""
    port = slow_server(int(MEASURED_DELAY * 1000))
    # The spin version: this test needs only steps 1 and 2 (the client is stopped right after the look).
    with waiting(c_client(impl, port, "spin")) as client:
        flags = {fd: proc.fd_flags(client.pid, fd) for fd in proc.sockets(client.pid)}
    expect(flags, "the client has no socket open while it waits for the reply")
    for fd, f in flags.items():
        expect(f & os.O_NONBLOCK, f"fd {fd} is a socket without O_NONBLOCK (fdinfo flags {f:o}) while the "
                                  "client waits: nb_set_nonblocking did not set it")


@pytest.mark.hint("poll-wait")
def test_c_poll_is_idle_while_waiting(impl, slow_server):
    """While the poll version waits for the reply, it uses (almost) no CPU."""
    port = slow_server(int(MEASURED_DELAY * 1000))
    with waiting(c_client(impl, port, "poll")) as client:
        share = cpu_share(client)
    expect(share <= 0.1, f"the poll client used {share:.2f} CPU seconds per second while it waited for the "
                         "server: it should sleep inside poll(2), using about 0")


@pytest.mark.hint("poll-wait")
def test_c_poll_sleeps_in_poll(impl, slow_server):
    """strace: after EAGAIN the client sleeps in poll through the server's silence, and spins no more."""
    v = poll_run(impl, slow_server)
    expect(v.trace.returncode == 0, f"nb_client --wait poll did not get its echo back: {v.why()}\n{v.story()}")
    polls = [w for w in v.waits if w.name in ("poll", "ppoll")]
    expect(polls, f"no poll(2) call was seen: nb_wait should call poll.\n{v.story()}")
    longest = max(w.duration or 0.0 for w in polls)
    expect(longest >= TRACED_DELAY / 2,
           f"the longest poll lasted {longest:.3f} s, while the server was silent for {TRACED_DELAY} s: "
           "nb_wait should hand its timeout to poll and sleep until the socket is ready")
    eagain = v.eagains(RECVS | SENDS)
    expect(len(eagain) <= len(polls) + 3,
           f"{len(eagain)} EAGAIN answers but only {len(polls)} polls: after EAGAIN, wait before calling again")


@pytest.mark.hint("try-first")
def test_c_poll_tries_first(impl, slow_server):
    """Every poll comes right after a send/recv that said EAGAIN; recv never blocks."""
    check_try_first_then_wait(poll_run(impl, slow_server), "nb_client --wait poll")


@pytest.mark.hint("partial-writes")
def test_c_partial_writes_arrive_intact(impl, slow_server):
    """Sends take only part of the message (strace shows it), yet every byte comes back, in both versions."""
    v = poll_run(impl, slow_server)
    expect(v.trace.returncode == 0 and "echo verified" in v.trace.stdout,
           f"nb_client --wait poll did not get back exactly what it sent: {v.why()}\n{v.story()}")
    expect(short_sends(v), "no send took fewer bytes than it was given, so this run never met a partial write: "
                           "give send the whole rest of the message each time, and let the kernel decide")
    port = slow_server(50)
    spin = subprocess.run(c_client(impl, port, "spin", "--size", str(8 << 20)), capture_output=True, text=True,
                          timeout=60)
    expect(spin.returncode == 0 and "echo verified" in spin.stdout,
           f"nb_client --wait spin did not get back exactly what it sent (8 MiB): {spin.stderr.strip()[-400:]}")


# ---------------------------------------------------------------- Python: sockets.py

@pytest.mark.hint("py-nonblocking")
def test_py_make_nonblocking():
    """make_nonblocking sets O_NONBLOCK on the fd, and a recv with nothing to read raises BlockingIOError."""
    import fcntl

    from nonblock.sockets import make_nonblocking

    a, b = socket.socketpair()
    with a, b:
        call(make_nonblocking, a)
        expect(fcntl.fcntl(a.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK, "the socket's fd has no O_NONBLOCK flag")
        expect(a.gettimeout() == 0.0, f"sock.gettimeout() is {a.gettimeout()!r}: with a timeout, Python "
                                      "waits in poll itself before each call; we want no waiting at all (0.0)")
        try:
            a.recv(10)
            pytest.fail("recv on an empty non-blocking socket returned instead of raising BlockingIOError",
                        pytrace=False)
        except BlockingIOError:
            pass


@pytest.mark.hint("py-wait")
def test_py_wait_until_ready():
    """wait_until_ready sleeps until the socket is readable, and gives up after its timeout."""
    from nonblock.sockets import wait_until_ready

    a, b = socket.socketpair()
    with a, b:
        t0 = time.monotonic()
        ready = call(wait_until_ready, a, selectors.EVENT_READ, 0.3)
        slept = time.monotonic() - t0
        expect(ready is False, f"nothing was sent, yet wait_until_ready returned {ready!r} (expected False)")
        expect(slept >= 0.25, f"wait_until_ready(timeout=0.3) returned after {slept:.3f} s: it should sleep")
        expect(wait_until_ready(a, selectors.EVENT_WRITE, 5) is True, "a fresh socket is writable at once")
        b.send(b"x")
        t0 = time.monotonic()
        expect(wait_until_ready(a, selectors.EVENT_READ, 5) is True, "data was waiting, yet it returned False")
        expect(time.monotonic() - t0 < 1.0, "data was already there: the wait should end at once")


@pytest.mark.hint("py-try-first")
def test_py_tries_first_then_waits(impl, slow_server):
    """strace: recv says EAGAIN first, then the client sleeps in epoll_wait (or poll), never blocking in recv."""
    check_try_first_then_wait(py_run(impl, slow_server), "python -m nonblock.client")


@pytest.mark.hint("py-try-first")
def test_py_idle_and_nonblocking_while_waiting(impl, slow_server):
    """While the Python client waits: O_NONBLOCK in fdinfo, and (almost) no CPU used."""
    port = slow_server(int(MEASURED_DELAY * 1000))
    with waiting(py_client(impl, port), env=impl.env()) as client:
        flags = {fd: proc.fd_flags(client.pid, fd) for fd in proc.sockets(client.pid)}
        share = cpu_share(client)
    expect(flags, "the client has no socket open while it waits for the reply")
    for fd, f in flags.items():
        expect(f & os.O_NONBLOCK, f"fd {fd} is a socket without O_NONBLOCK (fdinfo flags {f:o}) while the "
                                  "client waits: did make_nonblocking run?")
    expect(share <= 0.1, f"the Python client used {share:.2f} CPU seconds per second while it waited: "
                         "it should sleep in the selector, using about 0")


@pytest.mark.hint("py-partial-writes")
def test_py_partial_writes_arrive_intact(impl, slow_server):
    """sock.send takes only part of the data (strace shows it), yet every byte comes back."""
    v = py_run(impl, slow_server)
    expect(v.trace.returncode == 0 and "echo verified" in v.trace.stdout,
           f"python -m nonblock.client did not get back exactly what it sent: {v.why()}\n{v.story()}")
    expect(short_sends(v), "no send took fewer bytes than it was given, so this run never met a partial write: "
                           "give sock.send the whole rest of the data each time")
