"""Lab 1 graders, the Python client (sockets.py): the same checks as the C client's (test_lab1_clients.py).

make_nonblocking and wait_until_ready called directly, then `python -m nonblock.client`
against slow_server, seen from outside: O_NONBLOCK, an idle wait in epoll_wait, try
first then wait, partial sends that still bring every byte back.
"""
from __future__ import annotations

import functools
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from lab1_clients import (MEASURED_DELAY, busy_while_waiting, call, check_try_first_then_wait, expect,
                          expect_partial_writes_verified, py_client, py_run, waiting)

from xray import proc


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
