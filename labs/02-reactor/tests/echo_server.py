"""The echo server under test, started and watched: lab 2's graders give it the server's argv.

    with start_server(["build/bin/rx_echo", "--port", "0"]) as server:
        check_echo(server.address, b"hello")     # echo_clients.py: the clients it meets

start_server waits for its `listening on 127.0.0.1:PORT` line (grading.servers) and stops it
at the end of the block; a server that did not start, or died under a client, fails with
ServerFailed and what it printed on stderr. Server.runnable_seconds says how much CPU it
wanted (ran or waited for), which a busy machine does not hide.
"""
from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from grading.servers import EXPECTED, Address, first_line, listening_address
from xray import proc


class ServerFailed(AssertionError):
    """The server did not start, or died: the message says what it printed."""


@dataclass
class Server:
    """A running echo server."""

    process: proc.Launched
    address: Address
    stderr_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        """What the server wrote on stderr so far."""
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def assert_alive(self, after: str) -> None:
        """Fail, quoting the server's last words, if it exited."""
        code = self.process.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            if code == -13:
                how += " (SIGPIPE: a send() to a client that had gone, without MSG_NOSIGNAL)"
            raise ServerFailed(f"the server {how} {after}. Its stderr:\n{self.stderr()[-2000:]}")

    def cpu_seconds(self) -> float:
        return proc.cpu_seconds(self.pid)

    def runnable_seconds(self) -> float:
        return runnable_seconds(self.pid)


def runnable_seconds(pid: int) -> float:
    """Seconds pid's main thread has been runnable so far: on a CPU, or waiting for one.

    A loop that spins is runnable all the time, however busy the machine is; its CPU time
    is not (on a loaded laptop it may get a quarter of a core), so "how much CPU did it
    burn" would let a spinning server pass exactly when the machine is busy. A server
    that sleeps in epoll_wait is runnable only for the moments it has work. From
    /proc/PID/schedstat: nanoseconds on a CPU, nanoseconds waiting in the run queue. A kernel
    built without it (no CONFIG_SCHED_INFO) leaves only the CPU time to go by."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            ran, waited = f.read().split()[:2]
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            raise
        return proc.cpu_seconds(pid)
    return (int(ran) + int(waited)) / 1e9


def _limit_fds(nofile: int | None) -> None:
    """preexec_fn: runs in the child before exec, sets its RLIMIT_NOFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    elif hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))


@contextmanager
def start_server(argv: Sequence[str], *, env: dict[str, str] | None = None, nofile: int | None = None,
                 timeout: float = 10.0) -> Iterator[Server]:
    """Start an echo server, wait for its `listening on` line; stop it at the end of the block.

    nofile: the server's RLIMIT_NOFILE (soft and hard); by default its soft limit is
    raised to 4096 (if the hard limit allows) so that it can hold 1,000 clients.
    """
    with tempfile.TemporaryFile() as err, proc.launch(
            list(argv), env=env, stdin=subprocess.DEVNULL, stderr=err,
            preexec_fn=lambda: _limit_fds(nofile)) as process:
        line = first_line(process, timeout)
        address = listening_address(line)
        if address is None:
            time.sleep(0.2)  # let a dying server finish its last words
            err.seek(0)
            words = err.read().decode(errors="replace").strip()
            state = "still running" if process.poll() is None else f"exited with code {process.returncode}"
            raise ServerFailed(
                f"the server did not print '{EXPECTED}' within {timeout:g} s "
                f"(first line: {line!r}; it {state}). Its stderr:\n{words[-2000:] or '(nothing)'}")
        server = Server(process, address, err)
        try:
            yield server
        except ServerFailed:
            raise
        except (OSError, AssertionError) as error:
            # A client could not connect, was reset or got nothing back: most likely because the
            # server died (a Python server prints its port before its loop runs, so an unwritten
            # loop dies after it). Then its stderr says why, not the client's ConnectionRefusedError.
            proc.wait_until(lambda: process.poll() is not None, timeout=0.5)
            server.assert_alive(f"(a client then failed with: {str(error).splitlines()[0]})")
            raise
