"""Three things at once in one thread: a ticking timer, an echo server, two clients.

    python -m miniloop.demo

Each line says when it happened and which thread printed it. The timer is a plain
callback that re-arms itself with call_later; the server (miniloop.echo.serve) and
the clients are coroutines in Tasks. They interleave, yet there is only one thread:
every wait is a turn of the loop sleeping in epoll_wait.
"""
from __future__ import annotations

import socket
import sys
import threading
import time

from miniloop.command import run_command
from miniloop.echo import listen, serve
from miniloop.loop import EventLoop, sleep

START = time.monotonic()


def log(text: str) -> None:
    print(f"{time.monotonic() - START:6.3f}s  [{threading.current_thread().name}]  {text}", flush=True)


def tick(loop: EventLoop, n: int) -> None:
    """A callback, not a coroutine: it does its bit and schedules its next run."""
    log(f"tick {n}")
    if n < 4:
        loop.call_later(0.1, tick, loop, n + 1)


async def client(loop: EventLoop, name: str, port: int, words: list[str], pause: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    with sock:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        for word in words:
            await sleep(pause)
            await loop.sock_sendall(sock, word.encode())
            echoed = await loop.sock_recv(sock, 100)
            log(f"{name} sent {word!r}, the server sent back {echoed.decode()!r}")


async def main(loop: EventLoop) -> None:
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]
    server = loop.create_task(serve(loop, listener))
    log(f"echo server listening on 127.0.0.1:{port}")
    loop.call_soon(tick, loop, 0)
    alice = loop.create_task(client(loop, "alice", port, ["one", "two", "three"], 0.12))
    bob = loop.create_task(client(loop, "bob", port, ["un", "deux"], 0.17))
    await alice
    await bob
    await sleep(0.1)   # the last tick
    server.cancel()
    listener.close()
    log(f"done: {threading.active_count()} thread(s) in this process")


if __name__ == "__main__":
    sys.exit(run_command("demo", "02-reactor", main))
