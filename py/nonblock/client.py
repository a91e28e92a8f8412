"""Send a large message on a non-blocking socket, read the echo back, check every byte (lab 1).

The Python twin of c/nonblock/nb_client.c, built on nonblock.sockets:

    python -m nonblock.client --port PORT [--host ADDR] [--size BYTES] [--sndbuf BYTES]

It talks to slow_server (c/nonblock/slow_server.c), which reads everything until
the client shuts down its sending side, waits, then echoes it all back. The
client prints "sent N bytes; waiting for the reply" when it starts waiting, and
how much CPU it used while it waited. Exit status: 0 when every byte came back
intact, 1 otherwise, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import random
import socket
import sys
import time

from nonblock.sockets import make_nonblocking, recv_some, sendall

RECV_CHUNK = 64 * 1024   # how much one recv_some call may return


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nonblock.client", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=4 << 20, help="bytes to send (default 4 MiB)")
    parser.add_argument("--sndbuf", type=int, default=64 * 1024,
                        help="SO_SNDBUF: small, as over a slow network, so sends are partial (0: kernel default)")
    parser.add_argument("--timeout", type=float, default=10.0, help="the longest one wait may last, in seconds")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    # Random bytes from a fixed seed: lost, repeated or reordered pieces all show up.
    message = random.Random(1).randbytes(args.size)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # Python sockets are always O_CLOEXEC
    with sock:
        if args.sndbuf > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
        sock.connect((args.host, args.port))   # blocking: on loopback it answers at once
        make_nonblocking(sock)
        print(f"connected to {args.host}:{args.port}; fd {sock.fileno()} is non-blocking", flush=True)

        sendall(sock, message, args.timeout)
        sock.shutdown(socket.SHUT_WR)   # "I have sent everything": the server may reply now
        print(f"sent {len(message)} bytes; waiting for the reply", flush=True)

        wall0, cpu0 = time.monotonic(), time.process_time()
        reply = bytearray()
        while chunk := recv_some(sock, RECV_CHUNK, args.timeout):
            reply += chunk
            if len(reply) > len(message):
                print(f"client: received more bytes than were sent ({len(message)})", file=sys.stderr)
                return 1
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    print(f"received {len(reply)} bytes in {wall:.2f} s, using {cpu:.2f} s of CPU meanwhile", flush=True)

    if len(reply) != len(message):
        print(f"client: MISMATCH: sent {len(message)} bytes but only {len(reply)} came back", file=sys.stderr)
        return 1
    if reply != message:
        first = next(i for i, (a, b) in enumerate(zip(reply, message)) if a != b)
        print(f"client: MISMATCH at byte {first} (a lost or repeated piece of a partial write?)", file=sys.stderr)
        return 1
    print(f"echo verified: all {len(message)} bytes came back intact", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except NotImplementedError as err:
        # How an unwritten lab function answers: say which one, without a traceback.
        print(f"client: {err}: not implemented yet (write it in sockets.py)", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as err:
        print(f"client: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
