"""An echo server of coroutines on the mini loop: one Task per client, one thread in all.

    python -m miniloop.echo --port 0          # prints "listening on 127.0.0.1:PORT"
    nc 127.0.0.1 PORT                         # type lines, get them back

Written for you (it is not part of the exercise): it runs on *your* loop.py and
futures.py, so when it survives a thousand clients, a client that never reads and
a process out of file descriptors, your loop does. The three decisions that make it
robust are worth reading:

- backpressure: a client's Task does not read again before sock_sendall has handed
  everything back to the kernel, so a client that never reads costs one buffer;
- a client that vanishes (ECONNRESET, EPIPE) ends its own Task, never the server;
- out of file descriptors (EMFILE), accept() fails while the client stays queued, so
  the listening socket stays readable; and Linux checks for a free fd before it looks
  at the queue, so accept() keeps failing with EMFILE even once the queue is empty.
  Retrying at once would spin at 100% CPU. Instead we refuse the clients waiting in
  the queue (with one spare fd kept for the purpose: give it back, accept, close at
  once, take it again), then stop accepting for a moment (ACCEPT_PAUSE) and try again.
"""
from __future__ import annotations

import argparse
import errno
import os
import socket
import sys

from miniloop.command import run_command
from miniloop.futures import Future
from miniloop.loop import EventLoop, sleep

BUFSIZE = 65536            # bytes per recv: the most a client can make us hold at once
ACCEPT_PAUSE = 0.1         # seconds without accepting after running out of fds (then we retry)
# accept() errors that mean "this process or the system is out of resources", not "bad client".
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


async def handle_client(loop: EventLoop, conn: socket.socket) -> None:
    """Echo everything conn sends until it closes its side (or vanishes)."""
    with conn:
        try:
            while True:
                data = await loop.sock_recv(conn, BUFSIZE)
                if not data:          # the client closed its side: we are done
                    return
                await loop.sock_sendall(conn, data)   # not one more recv until all is sent
        except OSError:
            # ECONNRESET, EPIPE, ETIMEDOUT...: the client is gone. Ours to forget, not to report.
            return


def _report_failure(task: Future[None]) -> None:
    """Done-callback of a client's Task: an error that is not the client's doing is a bug, say so."""
    if not task.cancelled() and task.exception() is not None:
        print(f"echo: a client's task failed: {task.exception()!r}", file=sys.stderr, flush=True)


def _open_spare() -> int | None:
    """An fd held in reserve for refusing clients when there is no other (None if none is left)."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _refuse_waiting(listener: socket.socket, spare: int | None) -> int | None:
    """Accept every client waiting in the listen queue and close it at once.

    Each accept() needs a free fd: the spare one, closed just before. A refused client
    sees its connection closed instead of hanging in the queue. Returns the new spare.
    """
    if spare is not None:
        os.close(spare)
    while True:
        try:
            conn, _ = listener.accept()   # non-blocking: BlockingIOError once the queue is empty
        except OSError:
            break
        conn.close()
    return _open_spare()


async def serve(loop: EventLoop, listener: socket.socket) -> None:
    """Accept clients forever, starting a Task for each."""
    spare = _open_spare()
    refusing = False       # are we in an out-of-fds episode? (to say so once, not per client)
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except OSError as err:
            if err.errno in OUT_OF_RESOURCES:
                if not refusing:
                    print(f"echo: {os.strerror(err.errno)}: refusing clients until some leave",
                          file=sys.stderr, flush=True)
                    refusing = True
                spare = _refuse_waiting(listener, spare)
                # accept() would fail again at once (Linux wants a free fd first, even with
                # an empty queue), and epoll keeps saying "readable": pause, never spin.
                await sleep(ACCEPT_PAUSE)
                continue
            if err.errno in (errno.ECONNABORTED, errno.EPROTO):
                continue   # the client gave up while queued: nothing to serve
            raise
        refusing = False
        task = loop.create_task(handle_client(loop, conn))
        task.add_done_callback(_report_failure)


def listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket (close-on-exec, as Python makes every socket)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(socket.SOMAXCONN)   # a thousand clients may knock at once
    listener.setblocking(False)
    return listener


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniloop.echo", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)

    listener = listen(args.host, args.port)
    host, port = listener.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    return run_command("echo", "02-reactor", lambda loop: serve(loop, listener), before_close=listener.close)


if __name__ == "__main__":
    sys.exit(main())
