"""Lab 2 grader: both echo servers (C on rx, Python on miniloop) against adversarial clients,
and under strace: they wait in epoll_wait, never block in a read, run one thread.

Each test runs twice: [c] grades rx.c + rx_echo.c, [py] grades loop.py + futures.py
(through miniloop/echo.py, which is given).

One file of about 500 lines on purpose: one subject (a server against clients that misbehave),
each test one client, with the fixtures they share at the top; the clients themselves are in
echo_clients.py, the server's start in echo_server.py.
"""
from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass, field

import pytest
from echo_clients import (DripFeeder, SlowReader, check_echo, echo_on, flood, idle_client, many_clients, pattern,
                          vanish)
from echo_server import Server, ServerFailed, start_server

from grading.plugin import Impl
from grading.servers import EXPECTED, first_line, listening_address
from xray import Unavailable, proc, strace


@dataclass(frozen=True)
class EchoServer:
    """One of the two servers under test."""

    name: str               # "c" or "py"
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    files: str = ""         # the learner's files it runs on, for messages


@pytest.fixture(params=["c", "py"])
def server(request: pytest.FixtureRequest, impl: Impl) -> EchoServer:
    return _server(request.param, impl)


def _server(name: str, impl: Impl) -> EchoServer:
    if name == "c":
        return EchoServer("c", [str(impl.bin("rx_echo")), "--port", "0"], impl.env(), "rx.c and rx_echo.c")
    return EchoServer("py", impl.python("miniloop.echo", "--port", "0"), impl.env(), "loop.py and futures.py")


@dataclass
class Activity:
    """What a server's main thread did over `seconds` of wall time."""

    seconds: float
    runnable: float   # on a CPU or waiting for one: the whole time for a loop that spins
    cpu: float        # on a CPU: what a loaded machine gave it

    @property
    def spinning(self) -> bool:
        """Runnable most of the time: it never sleeps (on an idle machine that is ~100% CPU)."""
        return self.runnable > self.seconds / 2

    def __str__(self) -> str:
        on_cpu = min(self.cpu, self.runnable)   # CPU time counts in 10 ms ticks: it may overshoot a little
        return (f"runnable {self.runnable:.2f} s of {self.seconds:.2f} s ({on_cpu:.2f} s on a CPU, the rest "
                "waiting for one)")


class Meter:
    """Measures a server from now on: `Meter(srv).read()` is its Activity since the Meter was made."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.started, self.runnable, self.cpu = time.monotonic(), srv.runnable_seconds(), srv.cpu_seconds()

    def read(self) -> Activity:
        return Activity(time.monotonic() - self.started, self.srv.runnable_seconds() - self.runnable,
                        self.srv.cpu_seconds() - self.cpu)


def watch(srv: Server, seconds: float) -> Activity:
    """The server's Activity over the next `seconds`."""
    meter = Meter(srv)
    time.sleep(seconds)
    return meter.read()


# ---- what it does for its clients ----

@pytest.mark.hint("echo")
def test_echoes_what_it_receives(server: EchoServer) -> None:
    """A client gets back exactly what it sent: a line, then 300 KB."""
    with start_server(server.argv, env=server.env) as srv:
        check_echo(srv.address, b"hello, reactor\n", who="a client")
        check_echo(srv.address, pattern(0, 300_000), timeout=5, who="a client sending 300 KB")
        srv.assert_alive("after echoing two clients")


@pytest.mark.hint("thousand-clients")
def test_thousand_clients_at_once(server: EchoServer) -> None:
    """1,000 clients connected at the same time all get their echoes, twice each."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2400:
        raise Unavailable(f"the hard limit on open files is {hard} (ulimit -Hn); this test needs 2,400 "
                          "(1,000 client sockets here, 1,000 in the server)")
    with start_server(server.argv, env=server.env) as srv:
        crowd = many_clients(srv.address, 1000, rounds=2, timeout=30)
        srv.assert_alive("while 1,000 clients were connected")
        assert crowd.done == crowd.clients, (
            f"{crowd.done} of 1,000 clients, all connected at the same time, got both their echoes within "
            f"30 s. First problems: {'; '.join(crowd.failures)}. Does the server accept every waiting "
            f"client (loop on accept until EAGAIN), and serve each one a little at a time?")


@pytest.mark.hint("one-slow-client")
def test_idle_and_drip_feeding_clients_do_not_stall_others(server: EchoServer) -> None:
    """While one client sits silent and another sends one byte at a time, others are served at once."""
    data = b"one byte at a time, please\n"
    with start_server(server.argv, env=server.env) as srv, idle_client(srv.address):
        drip = DripFeeder(srv.address, data, pause=0.04)
        drip.start()
        worst = 0.0
        for _ in range(8):
            took = check_echo(srv.address, b"next!\n", timeout=2,
                              who="a client arriving while one client is silent and another drip-feeds")
            worst = max(worst, took)
            time.sleep(0.05)
        drip.join(10)
        assert worst < 0.5, (f"a client waited {worst:.2f} s for its echo while another client was silent or "
                             "slow: the server is waiting for one client instead of the next ready one")
        assert drip.error is None and bytes(drip.received) == data, (
            f"the drip-feeding client sent {len(data)} bytes, one at a time, and got back "
            f"{bytes(drip.received)!r} ({drip.error or 'no error'}): echo each byte as it comes")


@pytest.mark.hint("partial-writes")
def test_slow_reader_gets_every_byte(server: EchoServer) -> None:
    """A client that reads nothing for a while, then everything, gets every byte back in order."""
    with start_server(server.argv, env=server.env) as srv:
        reader = SlowReader(srv.address)
        try:
            reader.fill()
            srv.assert_alive("while a client was sending without reading")
            try:
                reader.drain()
            except AssertionError as err:
                raise AssertionError(_why_not_drained(srv, err)) from None
            # Drained: the server must now read from this client again.
            got = echo_on(reader.sock, b"and now?\n", timeout=3)
            assert got == b"and now?\n", (
                f"after its backlog of {reader.sent} bytes drained, the client sent 9 more bytes and got "
                f"{got!r}: once everything pending is sent, go back to reading (RX_READABLE)")
        finally:
            reader.close()


def _why_not_drained(srv: Server, err: AssertionError) -> str:
    """The drain's failure, and whether the server spins meanwhile: the sign of RX_WRITABLE left on
    (always ready) with nothing left to write, so that the client's bytes are never read again."""
    srv.assert_alive("while a client read back its echo")
    activity = watch(srv, 0.5)
    if not activity.spinning:
        return str(err)
    return (f"the echo stopped halfway, and the server, with nothing to do for anyone, spins: {activity} "
            f"(state {proc.state(srv.pid)}). RX_WRITABLE is left on after the echo drained, so epoll reports the "
            "socket ready at once, again and again, and the client's remaining bytes are never read. When off "
            f"reaches len, switch back to RX_READABLE. (What the client saw: {err})")


@pytest.mark.hint("epollout")
def test_client_that_does_not_read_does_not_block_others(server: EchoServer) -> None:
    """While one client's echo is stuck (it does not read), another client is served at once."""
    with start_server(server.argv, env=server.env) as srv:
        # The same echo with nobody stuck: what "at once" means on this machine right now.
        baseline = check_echo(srv.address, b"anyone home?\n", timeout=5, who="a first client")
        limit = max(0.5, 4 * baseline)
        if limit >= 2:
            pytest.fail(f"a plain echo took {baseline:.2f} s before any client got stuck: the machine was too "
                        "busy to judge this, run again", pytrace=False)
        reader = SlowReader(srv.address)
        try:
            reader.fill()
            srv.assert_alive("while a client was sending without reading")
            meter = Meter(srv)
            try:
                took = check_echo(srv.address, b"anyone home?\n", timeout=2,
                                  who="a client arriving while another one does not read its echo")
            except AssertionError:
                srv.assert_alive("while one client did not read its echo and another one arrived")
                raise AssertionError(_stuck_with(srv, meter.read())) from None
            assert took < limit, (
                f"that client waited {took:.2f} s for its echo (a plain echo took {baseline:.3f} s on this "
                "machine a moment before): the server serves others only now and then while one client is stuck")
        finally:
            reader.close()


def _stuck_with(srv: Server, activity: Activity) -> str:
    """Why a new client got no echo while another client's echo was stuck: spinning or sleeping in send."""
    state = proc.state(srv.pid)
    how = (f"it was {activity} (state {state}): it spins, retrying send in a loop" if activity.spinning else
           f"it was {activity} (state {state}): it sleeps inside send, on a blocking socket or in a loop that "
           "waits for everything to go out")
    return (f"while one client did not read its echo, a new client waited {activity.seconds:.1f} s and got nothing: the "
            f"server waited for the stuck client, and {how}. On EAGAIN keep the rest, ask for RX_WRITABLE "
            "(add_writer) and return to the reactor")


@pytest.mark.hint("backpressure")
def test_stops_reading_from_a_client_that_does_not_read(server: EchoServer) -> None:
    """A client that sends without reading is soon stalled: the server stops taking its bytes."""
    with start_server(server.argv, env=server.env) as srv:
        reader = SlowReader(srv.address, limit=256 << 20)
        try:
            sent = reader.fill()
            srv.assert_alive("while a client was sending without reading")
            assert reader.stalled, (
                f"a client that reads nothing sent {sent >> 20} MB and the server kept taking it: it either "
                "keeps every echo it cannot send (one client can eat all its memory) or throws them away. "
                "While echo is pending for a client, stop reading from it (ask for writable only)")
        finally:
            reader.close()


@pytest.mark.hint("sigpipe")
def test_clients_that_vanish_do_not_kill_the_server(server: EchoServer) -> None:
    """Clients that reset the connection, or close it with echo pending, never kill the server."""
    with start_server(server.argv, env=server.env) as srv:
        for i in range(3):
            vanish(srv.address, "reset")
            srv.assert_alive("after a client reset its connection with echo pending (send: ECONNRESET or EPIPE)")
            vanish(srv.address, "half-close")
            srv.assert_alive("after a client closed its side, then reset, with echo pending (send: EPIPE)")
        time.sleep(0.2)
        srv.assert_alive("after clients vanished with echo pending (RST, ECONNRESET, EPIPE)")
        check_echo(srv.address, who="a client arriving after others vanished")


# How long the flood's clients may wait for an answer. A correct server answers all 80 in a
# few milliseconds (flood returns as soon as every client has one); the margin is for a busy
# machine, where the server may not be scheduled for a while.
FLOOD_WAIT = 5.0


@pytest.mark.hint("emfile")
def test_out_of_fds_it_neither_dies_nor_spins_and_recovers(server: EchoServer) -> None:
    """With RLIMIT_NOFILE 48 and 80 clients: alive, serving, ~0 CPU, the rest refused (closed, not
    left hanging); new clients served once fds free up, and no accepted fd left open."""
    with start_server(server.argv, env=server.env, nofile=48) as srv:
        crowd = flood(srv.address, 80, wait=FLOOD_WAIT)
        try:
            srv.assert_alive("when it ran out of file descriptors (accept failed with EMFILE)")
            assert crowd.echoed, (
                f"80 clients arrived at a server allowed 48 fds: none got an echo within {FLOOD_WAIT:g} s "
                f"({len(crowd.refused)} refused, {len(crowd.waiting)} no answer)")
            activity = watch(srv, 1.0)
            assert not activity.spinning, (
                f"out of fds, with clients still queued, the server spins: {activity}. "
                "accept fails with EMFILE, the client stays queued, the listening socket stays readable, "
                "epoll_wait returns at once, forever. Refuse the client (the spare-fd trick) or stop "
                "watching the listening socket for a while")
            assert not crowd.waiting, (
                f"80 clients arrived at a server allowed 48 fds: {len(crowd.echoed)} got their echo, "
                f"{len(crowd.refused)} were refused, and {len(crowd.waiting)} got neither an echo nor a refusal "
                f"within {FLOOD_WAIT:g} s: they hang. A client that cannot be served must see its connection "
                "closed: refuse_one accepts it on the spare fd and closes that fd at once")
            got = echo_on(crowd.socks[crowd.echoed[0]], b"still there?\n", timeout=2)
            assert got == b"still there?\n", (
                f"out of fds, a client that was already connected sent a line and got {got!r}: "
                "keep serving the clients you have")
        finally:
            crowd.close()
        deadline = time.monotonic() + 5
        while True:
            srv.assert_alive("after the clients left")
            try:
                check_echo(srv.address, b"room now?\n", timeout=1, who="a client arriving after 80 others left")
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        leaked = _sockets_left_open(srv.pid, keep=1)
        assert not leaked, (
            f"every client has left, yet the server still holds {len(leaked)} socket(s) besides the listening "
            f"one (fds {leaked[:8]} in /proc/PID/fd): an accepted connection that is never closed. Close the fd "
            "of every client you refuse or drop")


def _sockets_left_open(pid: int, keep: int, patience: float = 3.0) -> list[int]:
    """The server's socket fds beyond the `keep` it holds for good (its listening socket), once
    it has had `patience` seconds to notice that its clients closed (a busy machine may take a
    while to schedule it); [] as soon as it is down to `keep`."""
    deadline = time.monotonic() + patience
    while True:
        fds = proc.sockets(pid)
        if len(fds) <= keep or time.monotonic() > deadline:
            return fds[keep:] if len(fds) > keep else []
        time.sleep(0.05)


@pytest.mark.hint("idle-cpu")
def test_idle_server_uses_no_cpu(server: EchoServer) -> None:
    """With one silent client connected, the server sleeps: no CPU used over one second."""
    with start_server(server.argv, env=server.env) as srv, idle_client(srv.address):
        check_echo(srv.address, who="a client")
        time.sleep(0.3)
        activity = watch(srv, 1.0)
        # Either sign will do: runnable most of the time (a spin, however little CPU a busy machine
        # gives it), or CPU used at all (a poll: a sleeping server uses none, busy machine or not).
        assert not activity.spinning and activity.cpu < 0.05, (
            f"an idle server (one silent client) was {activity}, and is in state "
            f"'{proc.state(srv.pid)}' (S = sleeping): it polls instead of sleeping in epoll_wait. "
            "Is the epoll_wait timeout 0? Is RX_WRITABLE left on with nothing to write?")


# ---- how it does it: one run under strace per server ----

READS = ("read", "readv", "recv", "recvfrom", "recvmsg")
SENDS = ("write", "send", "sendto")   # all three have the length as their third argument
WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")


@dataclass
class TracedRun:
    """What we saw of one server under strace: a silent client, a drip-feeder, a 100 KB echo, 1 s idle."""

    server: EchoServer
    trace: strace.Trace | None = None
    problem: str | None = None             # why the scenario did not complete
    unavailable: Unavailable | None = None  # strace cannot run here
    threads: list[proc.Thread] = field(default_factory=list)   # /proc/PID/task, clients connected
    blocking_sockets: list[int] = field(default_factory=list)  # socket fds without O_NONBLOCK
    sockets: int = 0                       # socket fds seen

    def check(self) -> strace.Trace:
        """The trace, or raise: skip when strace is unavailable, fail when the server did not run."""
        if self.unavailable is not None:
            raise self.unavailable
        if self.problem is not None:
            raise AssertionError(self.problem)
        assert self.trace is not None
        return self.trace


def _traced_scenario(server: EchoServer) -> TracedRun:
    run_info = TracedRun(server)
    try:
        with strace.launch(server.argv, trace="network,desc", env=server.env,
                           stdin=subprocess.DEVNULL) as run:
            line = first_line(run, timeout=30)
            address = listening_address(line)
            try:
                if address is None:
                    raise ServerFailed(f"under strace, the server did not print '{EXPECTED}' "
                                       f"(first line {line!r})")
                with idle_client(address):
                    drip = DripFeeder(address, b"drip", pause=0.2)
                    drip.start()
                    check_echo(address, pattern(0, 100_000), timeout=15, who="a client (server under strace)")
                    drip.join(10)
                    run_info.threads = proc.threads(run.pid)
                    fds = proc.sockets(run.pid)
                    run_info.sockets = len(fds)
                    run_info.blocking_sockets = [fd for fd in fds if _is_blocking(run.pid, fd)]
                    time.sleep(1.0)   # nothing happens: the server should sleep in epoll_wait
                time.sleep(0.3)
            except (AssertionError, OSError, TimeoutError) as err:
                run_info.problem = str(err)
            run.terminate()
            tr = run.finish(timeout=10)
            run_info.trace = tr
            if run_info.problem is not None:
                run_info.problem += f"\n(the server's stderr: {tr.stderr.strip()[-1500:] or 'nothing'})"
    except Unavailable as err:
        run_info.unavailable = err
    return run_info


def _is_blocking(pid: int, fd: int) -> bool:
    """Is pid's fd a blocking socket? A socket closed since we listed it is not."""
    try:
        return not proc.fd_flags(pid, fd) & os.O_NONBLOCK
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module", params=["c", "py"])
def traced(request: pytest.FixtureRequest, impl: Impl) -> TracedRun:
    """The strace scenario of one server, run once and shared by the tests below.

    It never fails itself: what went wrong is kept, and each test reports it (a fixture
    error would say "the grader broke", not "your code did this")."""
    return _traced_scenario(_server(request.param, impl))


def _client_calls(tr: strace.Trace, names: tuple[str, ...]) -> list[strace.Call]:
    """The calls named `names` on sockets returned by accept (until they are closed)."""
    clients: set[int] = set()
    found = []
    for call in tr.calls:
        fd = call.fd
        if call.name in ("accept", "accept4") and call.retval is not None and call.retval >= 0:
            clients.add(call.retval)
        elif call.name == "close" and fd is not None:
            clients.discard(fd)
        elif call.name in names and fd in clients:
            found.append(call)
    return found


def _client_reads(tr: strace.Trace) -> list[strace.Call]:
    """The read-like calls on sockets returned by accept (until they are closed)."""
    return _client_calls(tr, READS)


@pytest.mark.hint("epoll-wait")
def test_waits_in_epoll_wait(traced: TracedRun) -> None:
    """The server waits for its clients in epoll_wait, and sleeps there while nothing happens."""
    tr = traced.check()
    waits = tr.named(*WAITS)
    assert waits, (f"strace saw no epoll_wait call: the server does not wait with epoll. "
                   f"What it called most: {list(tr.summary().items())[:8]}")
    longest = max((c.duration if c.duration is not None else time.time() - c.start) for c in waits)
    assert longest >= 0.5, (
        f"{len(waits)} epoll_wait calls, the longest {longest * 1000:.0f} ms, though the server had nothing to "
        "do for a whole second: it should sleep in one epoll_wait (timeout -1, or until the next timer)")


@pytest.mark.hint("no-blocking-read")
def test_no_read_blocks(traced: TracedRun) -> None:
    """Every read on a client socket returns data, end of file or EAGAIN at once; none waits."""
    tr = traced.check()
    reads = _client_reads(tr)
    assert any(c.retval and c.retval > 0 for c in reads), (
        f"strace saw no read/recv on an accepted socket that returned data (calls seen: "
        f"{list(tr.summary().items())[:8]})")
    slow = [c for c in reads if c.duration is None or c.duration > 0.1]
    assert not slow, (
        f"{len(slow)} read(s) on a client socket waited: {slow[0].name}({slow[0].args}) = {slow[0].result} took "
        f"{'until the end' if slow[0].duration is None else f'{slow[0].duration:.2f} s'}. A read must only "
        "happen when epoll said the socket is readable, on a non-blocking socket")
    odd = [c for c in reads if c.retval is not None and c.retval < 0 and c.errno not in ("EAGAIN", "EWOULDBLOCK")]
    assert not odd, f"unexpected read error on a client socket: {odd[0].name}({odd[0].args}) = {odd[0].result}"


@pytest.mark.hint("nonblocking-sockets")
def test_sockets_are_nonblocking(traced: TracedRun) -> None:
    """The listening socket and every client socket have O_NONBLOCK (seen in /proc/PID/fdinfo)."""
    traced.check()
    assert traced.sockets >= 2, f"the server had {traced.sockets} sockets open with two clients connected"
    assert not traced.blocking_sockets, (
        f"socket fds {traced.blocking_sockets} of the server are blocking (no O_NONBLOCK in /proc/PID/fdinfo): "
        "one slow client could then freeze the whole loop. accept4(..., SOCK_NONBLOCK) / sock.setblocking(False)")


@pytest.mark.hint("one-thread")
def test_runs_one_thread(traced: TracedRun) -> None:
    """One thread serves every client: no thread created, one task in /proc/PID/task."""
    tr = traced.check()
    assert not tr.threads_created, (
        f"the server created {len(tr.threads_created)} thread(s) (clone with CLONE_THREAD): the reactor's "
        "point is one thread for all the clients")
    names = [t.name for t in traced.threads]
    assert len(names) == 1, f"with clients connected, the server had {len(names)} threads: {names}"


@pytest.mark.hint("epoll-ctl-cost")
def test_epoll_ctl_only_when_interest_changes(traced: TracedRun) -> None:
    """epoll_ctl(EPOLL_CTL_MOD) only around a send that left echo pending: none for an echo sent whole.

    A MOD is worth its syscall when the interest really changes: to RX_WRITABLE when a
    send left part of the echo behind, back to RX_READABLE once it has drained. So there
    can be at most two per send that could not take everything; the count is exact, and
    does not depend on how fast the machine is.
    """
    tr = traced.check()
    messages = [c for c in _client_reads(tr) if c.retval is not None and c.retval > 0]
    blocked = [c for c in _client_calls(tr, SENDS) if _left_something(c)]
    mods, unchanged = _interest_changes(tr)
    assert mods <= 2 * len(blocked), (
        f"{len(messages)} echoed messages cost {mods} epoll_ctl(EPOLL_CTL_MOD) calls ({unchanged} of them asked "
        f"for the events already registered), though only {len(blocked)} send(s) left echo pending: at most "
        f"{2 * len(blocked)} were needed. Each MOD is a syscall on every message; call rx_mod only when the "
        "interest changes (compare with c->events)")


def _left_something(send: strace.Call) -> bool:
    """Did this send leave part of its buffer unsent (EAGAIN, or fewer bytes than asked)?"""
    if send.errno in ("EAGAIN", "EWOULDBLOCK"):
        return True
    asked = send.arg(2)
    return send.retval is not None and send.retval >= 0 and asked.isdigit() and send.retval < int(asked)


def _interest_changes(tr: strace.Trace) -> tuple[int, int]:
    """(EPOLL_CTL_MOD calls, those of them that set the events the fd already had)."""
    registered: dict[str, str] = {}    # fd -> its events, as strace printed them
    mods = unchanged = 0
    for call in tr.named("epoll_ctl"):
        op, fd, events = call.arg(1), call.arg(2), _events(call.arg(3))
        if op == "EPOLL_CTL_ADD":
            registered[fd] = events
        elif op == "EPOLL_CTL_DEL":
            registered.pop(fd, None)
        elif op == "EPOLL_CTL_MOD":
            mods += 1
            unchanged += registered.get(fd) == events
            registered[fd] = events
    return mods, unchanged


def _events(event: str) -> str:
    """'EPOLLIN|EPOLLOUT' out of strace's '{events=EPOLLIN|EPOLLOUT, data={...}}'."""
    return event.removeprefix("{").split(",", 1)[0].removeprefix("events=")
