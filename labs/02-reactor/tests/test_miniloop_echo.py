"""Lab 2, Python half: the echo server of miniloop/echo.py on your loop, seen from outside.

The mechanism, under strace and /proc: it sleeps in epoll_wait, never in recv, burns
no CPU when idle, and has one thread.
"""
from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import pytest

from echo_server import runnable_seconds

from grading.plugin import Impl
from grading.servers import EXPECTED, Talking, first_line, listening_address
from xray import proc, strace

EPOLL_WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")


# --- the mechanism, seen from outside: the echo server on your loop ------------------------------

def _listening_port(server: Talking, timeout: float, stderr: Callable[[], str]) -> int:
    line = first_line(server, timeout)
    address = listening_address(line)
    if address is None:
        pytest.fail(f"the echo server printed {line!r} instead of '{EXPECTED}'. "
                    f"Its stderr: {stderr()[-600:]}", pytrace=False)
    return address[1]


def _echo(port: int, message: bytes, *, pause: float = 0.0, stderr: Callable[[], str]) -> socket.socket:
    """Connect, wait `pause`, send message, expect it back; return the open client socket."""
    error: OSError | None = None
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(pause)
        client.sendall(message)
        got = b""
        while len(got) < len(message):
            chunk = client.recv(len(message) - len(got))
            if not chunk:
                break
            got += chunk
    except OSError as err:
        error = err
    if error is not None:
        pytest.fail(f"the echo server on your loop did not answer ({error!r}). Its stderr: {stderr()[-600:]}",
                    pytrace=False)
    assert got == message, f"the echo server sent back {got!r} for {message!r}"
    return client


@pytest.mark.hint("py-echo-epoll")
def test_echo_server_waits_in_epoll_wait_never_in_recv(impl: Impl) -> None:
    """Under strace: epoll_wait does the waiting; every recv on a client returns data, EOF or EAGAIN at once; one thread."""
    trace = "network,desc"   # desc: read, close, and the epoll family (epoll_wait or epoll_pwait, per arch)
    with strace.launch(impl.python("miniloop.echo", "--port", "0"), env=impl.env(), trace=trace) as server:
        port = _listening_port(server, 15, lambda: server.finish(timeout=2).stderr)
        client = _echo(port, b"ping", pause=0.5, stderr=lambda: server.finish(timeout=2).stderr)
        with client:
            time.sleep(0.3)
            client.sendall(b"pong")
            assert client.recv(4) == b"pong"
            threads = proc.threads(server.pid)
        time.sleep(0.2)                  # let the server see the end of the stream
        server.terminate()
        tr = server.finish(timeout=10)

    assert len(threads) == 1 and not tr.threads_created, (
        f"the echo server ran {len(threads)} threads ({[t.name for t in threads]}): a reactor needs only one")
    waits = tr.named(*EPOLL_WAITS)
    assert waits, f"no epoll_wait call at all (calls seen: {tr.summary()}): the loop must wait in selector.select()"

    accepts = [c for c in tr.named("accept4", "accept") if c.retval is not None and c.retval >= 0]
    assert accepts, f"the server never accepted a connection (calls seen: {tr.summary()})"
    fd, since = accepts[0].retval, accepts[0].start
    recvs = [c for c in tr.named("recvfrom", "recv", "read", "recvmsg")
             if c.start >= since and c.fd == fd]
    assert recvs, f"no recv on the client's fd {fd} (calls seen: {tr.summary()})"
    for c in recvs:
        assert c.errno in (None, "EAGAIN"), f"{c.name} on the client's fd failed: {c.result}"
        assert c.duration is not None and c.duration < 0.2, (
            f"{c.name}(fd {fd}) took {c.duration} s: it blocked the whole loop. The socket must be "
            "non-blocking, and the loop must wait in epoll_wait, not in recv")
    eagain = [c for c in recvs if c.errno == "EAGAIN"]
    assert eagain, (
        f"recv on the client's fd returned EAGAIN 0 times in {len(recvs)} calls, although the client waited "
        "0.5 s before sending: sock_recv must try recv first (EAGAIN: nothing yet), then wait with add_reader")
    long_waits = [c for c in waits if c.start >= since and c.duration is not None and c.duration >= 0.3]
    assert long_waits, (
        "while the client paused, no epoll_wait lasted 0.3 s or more: the loop should have slept in "
        f"epoll_wait (durations: {[c.duration for c in waits if c.start >= since][:10]})")


@pytest.mark.hint("py-idle-loop")
def test_idle_echo_server_burns_no_cpu(impl: Impl) -> None:
    """An idle loop (no client, no timer) sleeps: about 0 s of CPU in one second, and it still answers."""
    with proc.launch(impl.python("miniloop.echo", "--port", "0"), env=impl.env(),
                     stderr=subprocess.PIPE) as server:
        def stderr() -> str:
            proc.stop(server)
            return server.stderr.read().decode(errors="replace") if server.stderr else ""

        port = _listening_port(server, 10, stderr)
        time.sleep(0.3)          # imports and the first turns are done
        if server.poll() is not None:
            pytest.fail(f"the echo server exited (code {server.returncode}) instead of waiting for clients. "
                        f"Its stderr: {stderr()[-600:]}", pytrace=False)
        before, runnable_before, started = proc.cpu_seconds(server.pid), runnable_seconds(server.pid), time.monotonic()
        time.sleep(1.0)
        used = proc.cpu_seconds(server.pid) - before
        runnable = runnable_seconds(server.pid) - runnable_before
        elapsed = time.monotonic() - started
        _echo(port, b"still there?", stderr=stderr).close()
    # Runnable most of the second: a spin, however little CPU a busy machine gave it. CPU at all: a poll.
    assert runnable < elapsed / 2 and used < 0.1, (
        f"the idle echo server was runnable {runnable:.2f} s of {elapsed:.2f} s and used {used:.2f} s of CPU: "
        "the loop spins instead of sleeping. With nothing ready and no timer, select() must get timeout None "
        "(epoll_wait(..., -1))")


@pytest.mark.hint("py-idle-loop")
def test_idle_echo_server_sleeps_in_epoll_wait_with_no_timeout(impl: Impl) -> None:
    """Under strace: one idle second is one epoll_wait(..., -1) that returns when a client arrives."""
    trace = "network,desc"
    with strace.launch(impl.python("miniloop.echo", "--port", "0"), env=impl.env(), trace=trace) as server:
        port = _listening_port(server, 15, lambda: server.finish(timeout=2).stderr)
        idle_from = time.time()
        time.sleep(1.0)
        idle_to = time.time()
        _echo(port, b"wake up", stderr=lambda: server.finish(timeout=2).stderr).close()
        server.terminate()
        tr = server.finish(timeout=10)

    waits = tr.named(*EPOLL_WAITS)
    during = [c for c in waits if idle_from + 0.1 <= c.start <= idle_to - 0.1]
    assert len(during) <= 2, (
        f"{len(during)} epoll_wait calls began during one idle second (timeouts "
        f"{sorted({c.arg(3) for c in during})}): an idle loop must make one call and sleep in it")
    sleepers = [c for c in waits if c.duration is not None and c.duration >= 0.7]
    assert sleepers, (
        f"no epoll_wait slept through the idle second ({len(waits)} calls, timeouts "
        f"{sorted({c.arg(3) for c in waits})}): the loop is not sleeping in epoll_wait")
    assert sleepers[0].arg(3) == "-1", (
        f"the idle loop slept in epoll_wait with timeout {sleepers[0].arg(3)} ms: with no timer "
        "pending it must be -1 (selector.select(None)), i.e. 'until a fd is ready'")
