"""Lab 1 graders, the C client (nb.c) on a non-blocking socket; the Python client is in test_lab1_py_clients.py.

It sends a few MiB to slow_server, which reads them in small pieces, waits, then echoes
everything back. What is checked is the mechanism, seen from outside (lab1_clients.py
says how): O_NONBLOCK in /proc/PID/fdinfo while it waits, no CPU burnt in poll
(/proc/PID/schedstat), and under strace, EAGAIN, then poll, every byte back intact.
"""
from __future__ import annotations

import errno
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from lab1_clients import (MEASURED_DELAY, RECVS, TRACE, TRACED_DELAY, SocketView, busy_while_waiting, c_client,
                          check_try_first_then_wait, expect, expect_a_wait_after_each_eagain, expect_no_blocking_recv,
                          expect_one_long_wait, expect_partial_writes_verified, poll_run, view, waiting)

from xray import proc, strace


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
