"""The echo server the benchmark runs on asyncio's loop and on uvloop: the same Protocol on both.

    python -m bench.echo_servers --loop asyncio --port 0    # prints "listening on 127.0.0.1:PORT"
    python -m bench.echo_servers --loop uvloop --port 0

Why a Protocol and not streams (peers.asyncio_echo): a Protocol's data_received is called
straight from the loop's read callback, and transport.write tries send() at once; streams
add a StreamReader buffer, a Future and a coroutine resumption per message. Protocols are
the fast path both loops are tuned for (uvloop's own benchmarks use them), so comparing
loops with them compares the loops, not the streams layer. The code is identical for both
loops: only the loop factory differs.

Backpressure, as in rx_echo: when the transport's write buffer passes its high-water mark
(the client does not read), the loop calls pause_writing and we stop reading from that
client until resume_writing.
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

LOOPS = ("asyncio", "uvloop")


class Echo(asyncio.Protocol):
    """Send back every byte received, on the connection it came from."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport: asyncio.Transport's methods (uvloop's does not subclass it, but has them).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)   # sent at once if the socket takes it, else buffered by the loop

    def pause_writing(self) -> None:
        self.transport.pause_reading()   # the client is not reading: neither do we

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:port (0: any), say where, echo forever."""
    loop = asyncio.get_running_loop()
    # Our own listening socket, the same for both loops: backlog 4096 (a thousand clients
    # connect at once; asyncio's default is 100), and no name to resolve (given a host,
    # uvloop resolves it on libuv's thread pool: 4 threads that have nothing to do with echo).
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    server = await loop.create_server(Echo, sock=listener)
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def runner(name: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    """asyncio.run, or uvloop.run (the same, on a uvloop loop)."""
    if name == "uvloop":
        import uvloop   # imported only here: the asyncio server must not load it
        return uvloop.run
    return asyncio.run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_servers", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    try:
        runner(args.loop)(serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
