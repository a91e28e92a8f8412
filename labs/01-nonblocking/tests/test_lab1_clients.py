"""Lab 1 graders: the C client (nb.c), then the Python client (sockets.py), on a non-blocking socket.

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

import errno
import functools
import os
import re
import select
import selectors
import signal
import socket
import subprocess
import threading
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
    """While the busy loop waits for the reply, it never sleeps: it is on a CPU, or queued for one, all the time."""
    port = slow_server(int(MEASURED_DELAY * 1000))
    with waiting(c_client(impl, port, "spin")) as client:
        busy = busy_while_waiting(client)
    expect(busy.sleeps <= 10 and busy.share >= 0.5,
           f"the spinning client went to sleep {busy.sleeps} times in {busy.wall:.2f} s while it waited, and was on "
           f"a CPU or ready to run for only {busy.share:.2f} of each second ({busy}). A busy loop never sleeps: "
           "on EAGAIN, call recv again at once, with no poll, sleep or timeout")


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
        busy = busy_while_waiting(client)
    expect(busy.share <= 0.1, f"the poll client was on a CPU or ready to run for {busy.share:.2f} of each second "
                              f"while it waited for the server ({busy}): it should sleep inside poll(2), using about 0")


@pytest.mark.hint("poll-wait")
def test_c_poll_sleeps_in_poll(impl, slow_server):
    """strace: after EAGAIN the client sleeps in poll through the server's silence, and spins no more."""
    v = poll_run(impl, slow_server)
    expect(v.trace.returncode == 0, f"nb_client --wait poll did not get its echo back: {v.why()}\n{v.story()}")
    polls = [w for w in v.waits if w.name in ("poll", "ppoll")]
    expect(polls, f"no poll(2) call was seen: nb_wait should call poll.\n{v.story()}")
    expect_one_long_wait(polls, v, "poll")
    expect_a_wait_after_each_eagain(v, "poll")


def poll_timeouts(v: SocketView) -> list[str]:
    """The timeout each poll/ppoll was given, as strace printed it ("300", "-1", "{tv_sec=0, ...}", "NULL")."""
    timeouts = []
    for w in v.waits:
        if w.name == "poll":
            timeouts.append(w.args.rsplit(", ", 1)[-1])
        elif w.name == "ppoll":
            found = re.search(r"\], \d+, (NULL|\{[^}]*\})", w.args)
            timeouts.append(found.group(1) if found else "?")
    return timeouts


@pytest.mark.hint("poll-timeout")
def test_c_wait_honours_its_timeout(impl, slow_server):
    """With --timeout-ms 300 and a server silent for much longer, nb_recv_some gives up: -ETIMEDOUT, after ~0.3 s."""
    timeout_ms, patience = 300, 8.0
    port = slow_server(60_000)   # silent for a minute: far longer than the client may wait
    argv = c_client(impl, port, "poll", "--size", "4096", "--timeout-ms", str(timeout_ms))
    v = view(strace.run(argv, trace=TRACE, timeout=patience))
    given = ", ".join(sorted(set(poll_timeouts(v)))) or "no poll seen"
    expect(not v.trace.timed_out,
           f"nb_client --timeout-ms {timeout_ms} was still waiting {patience:.0f} s later, while the server stayed "
           f"silent (its polls were given the timeout {given}): nb_wait must hand timeout_ms to poll as it is, "
           "and nb_recv_some return -ETIMEDOUT when poll returns 0")
    expect(v.trace.returncode != 0 and "timed out" in v.trace.stderr,
           f"the server stayed silent, so nb_client --timeout-ms {timeout_ms} should fail with 'Connection timed "
           f"out' (-ETIMEDOUT), but it ended with: {v.why()}. When poll returns 0 the time ran out: "
           f"return -ETIMEDOUT\n{v.story()}")
    last_try = [c for c in v.io if c.name in RECVS and c.errno == "EAGAIN"]
    waited = v.trace.calls[-1].start - last_try[-1].start if last_try and v.trace.calls else 0.0
    expect(waited >= 0.8 * timeout_ms / 1000,
           f"nb_client gave up {waited:.3f} s after its last recv, but it was asked to wait {timeout_ms} ms "
           f"(its polls were given the timeout {given}): hand timeout_ms to poll as it is")


@pytest.mark.hint("poll-eintr")
def test_c_wait_retries_after_a_signal(nb_lib):
    """nb_wait goes back to sleep when a signal interrupts poll (EINTR), and returns once the socket is ready."""
    interval, data_after = 0.02, 0.3
    a, b = socket.socketpair()
    alarms: list[int] = []
    old_handler = signal.signal(signal.SIGALRM, lambda signum, frame: alarms.append(signum))

    def send_later() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})   # the alarms are for the waiting thread
        time.sleep(data_after)
        b.send(b"x")

    sender = threading.Thread(target=send_later, name="lab1-sender", daemon=True)
    with a, b:
        sender.start()
        signal.setitimer(signal.ITIMER_REAL, interval, interval)
        try:
            started = time.monotonic()
            result = nb_lib.nb_wait(a.fileno(), select.POLLIN, 10_000)
            took = time.monotonic() - started
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
        sender.join(5)
    expect(result != -errno.ENOSYS, "nb_wait: not implemented yet")
    expect(result != -errno.EINTR,
           f"nb_wait returned -EINTR after {took:.3f} s: a signal (SIGALRM, every {interval * 1000:.0f} ms, "
           f"{len(alarms)} of them in all) interrupted poll. When poll fails with EINTR nothing is wrong: "
           "call poll again")
    expect(result > 0 and result & select.POLLIN,
           f"nb_wait(fd, POLLIN, 10000) returned {result} after {took:.3f} s; a byte was sent after "
           f"{data_after} s, so it should return poll's revents, with POLLIN in them ({select.POLLIN})")


@pytest.mark.hint("try-first")
def test_c_poll_tries_first(impl, slow_server):
    """Every poll comes right after a send/recv that said EAGAIN; recv never blocks."""
    check_try_first_then_wait(poll_run(impl, slow_server), "nb_client --wait poll")


@pytest.mark.hint("partial-writes")
def test_c_partial_writes_arrive_intact(impl, slow_server):
    """Sends take only part of the message (strace shows it), yet every byte comes back, in both versions."""
    expect_partial_writes_verified(poll_run(impl, slow_server), "nb_client --wait poll",
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


def outcome_in_time(work: Callable[[], Any], unblock: Callable[[], None], patience: float) -> tuple[str, float]:
    """Run work() in a thread; after `patience` seconds call unblock() so it ends anyway.

    Returns (what happened, seconds it took): "TimeoutError", "returned ...", "raised ...",
    or "still waiting" when only unblock() ended it.
    """
    outcome: list[str] = []

    def worker() -> None:
        started = time.monotonic()
        try:
            result = work()
            what = f"returned {result!r:.60}"
        except NotImplementedError as err:
            what = f"{err}: not implemented yet"
        except TimeoutError:
            what = "TimeoutError"
        except Exception as err:   # whatever a wrong solution raises: reported by the caller
            what = f"raised {type(err).__name__}: {err}"
        outcome.append(what)
        took.append(time.monotonic() - started)

    took: list[float] = []
    thread = threading.Thread(target=worker, name="lab1-timeout", daemon=True)
    thread.start()
    thread.join(patience)
    if thread.is_alive():
        unblock()
        thread.join(5)
        return "still waiting", patience
    return outcome[0], took[0]


@pytest.mark.hint("py-timeout")
@pytest.mark.parametrize("which", ["recv_some", "sendall"])
def test_py_waits_honour_their_timeout(which):
    """recv_some / sendall with timeout=0.3 on a socket that never becomes ready raise TimeoutError after ~0.3 s."""
    from nonblock import sockets

    timeout, patience = 0.3, 5.0
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        work: Callable[[], Any]
        if which == "recv_some":   # nothing is ever sent to a: it never becomes readable
            work = functools.partial(sockets.recv_some, a, 100, timeout)
        else:                      # nobody reads b: a's buffer fills up and stays full
            work = functools.partial(sockets.sendall, a, bytes(64 << 20), timeout)
        what, took = outcome_in_time(work, unblock=lambda: b.shutdown(socket.SHUT_RDWR), patience=patience)
    if what.endswith("not implemented yet"):
        pytest.fail(what, pytrace=False)
    expect(what != "still waiting",
           f"{which}(..., timeout={timeout}) was still waiting {patience:.0f} s later on a socket that never "
           f"became ready: hand the timeout on to wait_until_ready, and raise TimeoutError when it returns False")
    expect(what == "TimeoutError",
           f"{which}(..., timeout={timeout}) on a socket that never became ready {what} after {took:.2f} s: "
           "when wait_until_ready returns False, the time ran out: raise TimeoutError")
    expect(took >= 0.8 * timeout,
           f"{which}(..., timeout={timeout}) raised TimeoutError after only {took:.3f} s: wait the whole "
           "timeout (wait_until_ready(sock, events, timeout)) before giving up")


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
        busy = busy_while_waiting(client)
    expect(flags, "the client has no socket open while it waits for the reply")
    for fd, f in flags.items():
        expect(f & os.O_NONBLOCK, f"fd {fd} is a socket without O_NONBLOCK (fdinfo flags {f:o}) while the "
                                  "client waits: did make_nonblocking run?")
    expect(busy.share <= 0.1, f"the Python client was on a CPU or ready to run for {busy.share:.2f} of each second "
                              f"while it waited ({busy}): it should sleep in the selector, using about 0")


@pytest.mark.hint("py-partial-writes")
def test_py_partial_writes_arrive_intact(impl, slow_server):
    """sock.send takes only part of the data (strace shows it), yet every byte comes back."""
    expect_partial_writes_verified(py_run(impl, slow_server), "python -m nonblock.client",
                                   "give sock.send the whole rest of the data each time")
