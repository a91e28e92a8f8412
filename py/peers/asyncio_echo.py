"""An echo server on asyncio's own event loop (streams API): the baseline the mini loop imitates.

    python -m peers.asyncio_echo --port 0
"""
from __future__ import annotations

import argparse
import asyncio


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()  # backpressure: wait while the client is not reading
    except ConnectionError:
        pass  # the client reset the connection: nothing to answer
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", port, backlog=4096)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
