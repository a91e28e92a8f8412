"""A small TLS echo server on 127.0.0.1, to try the talk's MySocket against (lab 1).

    python -m nonblock.tls_echo --port 0 --make-certs DIR    # a fresh test CA (trustme), then serve
    python -m nonblock.tls_echo --port 0 --cert server.pem   # your own key + certificate chain

With --make-certs it writes DIR/ca.pem (give it to the client: --cafile DIR/ca.pem)
and DIR/server.pem (the server's key and certificate, valid for 127.0.0.1 and
localhost), made by trustme: a throwaway CA that only your test client trusts.

First stdout line: "listening on 127.0.0.1:PORT" (--port 0 lets the kernel pick a
free port). Each connection gets back every byte it sends, until it closes.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from pathlib import Path


def make_certs(directory: Path) -> tuple[Path, Path]:
    """Write a throwaway CA and a server certificate for 127.0.0.1 / localhost.

    Returns (ca.pem, server.pem). Needs the trustme package (pip install trustme).
    """
    import trustme   # only this option needs it

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, server_path = directory / "ca.pem", directory / "server.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_path))
    return ca_path, server_path


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send back everything one client sends, until it closes its side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()   # do not read more than the client takes back
    except (ConnectionError, ssl.SSLError):
        pass   # a client that vanishes mid-way is not the server's problem
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def serve(port: int, cert: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert)
    server = await asyncio.start_server(echo, "127.0.0.1", port, ssl=context)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nonblock.tls_echo", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", type=Path, help="PEM file with the server's private key and certificate chain")
    which.add_argument("--make-certs", type=Path, metavar="DIR", help="generate DIR/ca.pem and DIR/server.pem first")
    args = parser.parse_args(argv)
    cert = args.cert
    if args.make_certs is not None:
        ca_path, cert = make_certs(args.make_certs)
        print(f"CA certificate for the client: {ca_path}", file=sys.stderr, flush=True)
    try:
        asyncio.run(serve(args.port, cert))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
