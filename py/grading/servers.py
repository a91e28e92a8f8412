"""The line every server of the workshop prints first, read once for all its readers.

Each echo server (rx_echo, slow_server, miniloop.echo, nonblock.tls_echo, the peers, bench's)
takes `--port 0`, lets the kernel pick a free port and prints `listening on 127.0.0.1:PORT`
as its first stdout line, flushed, before it serves. Graders, the benchmark and the notebooks
start it, read that line, and connect: this module is where the line is understood, so a
server that says something else fails the same way everywhere, with the line it did print.
"""
from __future__ import annotations

from typing import Protocol

Address = tuple[str, int]

PREFIX = "listening on "
EXPECTED = "listening on 127.0.0.1:PORT"   # what a failure message says the line should be


class NotListening(RuntimeError):
    """The server's first line was not `listening on HOST:PORT` (or none came in time)."""


class Talking(Protocol):
    """A started program whose stdout is read line by line: xray.proc.launch, xray.strace.launch."""

    def readline(self, timeout: float = ...) -> str: ...


def listening_address(line: str) -> Address | None:
    """('127.0.0.1', PORT) from 'listening on 127.0.0.1:PORT'; None for any other line."""
    if not line.startswith(PREFIX):
        return None
    host, _, port = line.removeprefix(PREFIX).strip().rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def first_line(server: Talking, timeout: float) -> str:
    """The server's first stdout line, or '' when none came within timeout seconds."""
    try:
        return server.readline(timeout=timeout)
    except TimeoutError:
        return ""


def wait_address(server: Talking, who: str, timeout: float = 10.0) -> Address:
    """Read the server's first line and return where it listens; NotListening (saying what it printed) if not."""
    line = first_line(server, timeout)
    address = listening_address(line)
    if address is None:
        seen = f"its first line was {line!r}" if line else f"it printed no line within {timeout:g} s"
        raise NotListening(f"{who} did not print '{EXPECTED}' ({seen})")
    return address


def wait_port(server: Talking, who: str, timeout: float = 10.0) -> int:
    """The port of wait_address(): the servers all listen on 127.0.0.1."""
    return wait_address(server, who, timeout)[1]
