# Your copy of py/nonblock/mysocket.py: edit it, then run `make lab1`. (Generated; see docs/ARCHITECTURE.md.)
"""The talk's MySocket, fixed: an asyncio TLS client with connect / send / receive / close (lab 1).

The slide "An example in action" shows a MySocket class that cannot work (it is
kept as printed in labs/01-nonblocking/talk/mysocket_as_printed.py). What goes
wrong there, and what this version does instead:

  * The host is hard-coded ('mysite.com'): here host, port and the SSLContext
    are parameters.
  * connect() is a plain method that calls the blocking connect() of an SSL
    socket: the TCP and TLS handshakes stall the whole event loop. Here
    connect() is a coroutine: asyncio.open_connection waits for both handshakes
    while the loop goes on running other tasks.
  * It hands the SSLSocket to loop.sock_recv, which asyncio refuses since
    Python 3.8.1 (TypeError: "Socket cannot be of type SSLSocket"; bpo-37404,
    filed in 2019 as "asyncio sock_recv blocks on ssl sockets"). Not because
    the bytes would be encrypted: SSLSocket.recv returns decrypted data. Because
    the loop waits for the fd to be readable, and with TLS that says little
    about data: the bytes that arrived may be part of a record, with nothing to
    decrypt yet; OpenSSL may already hold decrypted data while the fd has
    nothing new, so the wait never ends; reading may first need a write (a
    renegotiation, a key update); and a non-blocking SSLSocket says "not yet"
    with ssl.SSLWantReadError, which is not the BlockingIOError sock_recv
    handles. Here asyncio's own TLS layer sits on a plain non-blocking socket:
    the loop waits for raw bytes, OpenSSL decrypts them in memory
    (ssl.MemoryBIO), and a StreamReader gives us the decrypted text.
  * ensure_future / get_event_loop are called where no loop may be running;
    here asyncio.create_task runs inside the loop that runs connect().
  * The receive loop is never stopped; here close() cancels it and waits for it.
  * data.decode('utf-8') on each 256-byte piece breaks a character whose bytes
    straddle two pieces (UnicodeDecodeError). Here an incremental decoder keeps
    the first half until the rest arrives.
  * conn.write() writes without flow control; here writer.write is followed by
    await writer.drain(), which waits while the send buffer is full.
  * main() calls asyncio.sleep(0.2) without await: it does nothing at all (a
    coroutine object is made and dropped), so main ends before any reply. Here
    the caller awaits the reply itself: await my_sock.receive().

    python -m nonblock.tls_echo --port 0 --make-certs /tmp/certs &
    python -m nonblock.mysocket --port PORT --cafile /tmp/certs/ca.pem
"""
from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import ssl
import sys

READ_SIZE = 256   # the slide's sock_recv(…, 256): small reads make split characters likely


class MySocket:
    """A line-free text conversation with a TLS server: connect, send, receive, close.

    All methods must be called from tasks of the one running event loop that
    called connect(). Text is sent and received as UTF-8.
    """

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._receiver: asyncio.Task[None] | None = None    # runs _receive_loop
        # Text the receive loop has decoded, in order; None marks the end of the stream.
        self._received: asyncio.Queue[str | None] = asyncio.Queue()
        self._at_eof = False

    async def connect(self) -> None:
        """Open the TLS connection and start receiving in the background.

        The TCP and TLS handshakes happen while the event loop keeps running.
        Raises OSError (ConnectionRefusedError, ...) or ssl.SSLError
        (ssl.SSLCertVerificationError when the server's certificate is not trusted).
        """
        # TODO(lab1): await asyncio.open_connection(host, port, ssl=the context,
        #   server_hostname=host) and keep the reader and writer it returns. Then
        #   start self._receive_loop() in the background with asyncio.create_task
        #   (we are inside the running loop here) and keep the task in self._receiver.
        raise NotImplementedError("lab1: MySocket.connect")

    async def send(self, text: str) -> None:
        """Send text, encoded as UTF-8; returns once the socket has taken it."""
        assert self._writer is not None, "call connect() first"
        # TODO(lab1): write the encoded text with self._writer.write, then await
        #   self._writer.drain(): it waits while the send buffer is too full (flow control).
        raise NotImplementedError("lab1: MySocket.send")

    async def _receive_loop(self) -> None:
        """The background task: read, decode, queue the text; None at the end."""
        assert self._reader is not None
        # TODO(lab1): make an incremental UTF-8 decoder (codecs.getincrementaldecoder).
        #   Loop: data = await self._reader.read(READ_SIZE); b"" means the server
        #   closed. Decode each piece (final=True on the last) and put any non-empty
        #   text on self._received. Whatever ends the loop (end of stream, an error,
        #   cancellation), put None on the queue last (try/finally).
        raise NotImplementedError("lab1: MySocket._receive_loop")

    async def receive(self, timeout: float | None = None) -> str:
        """The next piece of text from the server ("" once it has closed the connection).

        Pieces are cut wherever the network cut them; join them yourself.
        Raises TimeoutError when nothing arrives within timeout seconds.
        """
        # TODO(lab1): once the end has been seen (self._at_eof), return "" at once.
        #   Otherwise await self._received.get() under asyncio.wait_for(…, timeout);
        #   None means the end: remember it in self._at_eof and return "".
        raise NotImplementedError("lab1: MySocket.receive")

    async def close(self) -> None:
        """Stop the receive task and close the connection (TLS close_notify included).

        Safe to call twice, or after a failed connect().
        """
        # TODO(lab1): cancel self._receiver, then wait until it has finished with
        #   asyncio.wait([task]) (awaiting the task itself would raise its CancelledError
        #   here). Then close self._writer and await wait_closed(), ignoring connection
        #   errors: the peer may be gone already.
        raise NotImplementedError("lab1: MySocket.close")

    async def __aenter__(self) -> MySocket:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def ping(host: str, port: int, context: ssl.SSLContext, message: str, timeout: float) -> str:
    """Send message, collect the reply until it is as long as the message (or the server closes)."""
    async with MySocket(host, port, context) as my_sock:
        await my_sock.send(message)
        print(">> " + message, flush=True)
        reply = ""
        while len(reply) < len(message):
            piece = await my_sock.receive(timeout)
            if not piece:
                break
            reply += piece
        print("<< " + reply, flush=True)
        return reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nonblock.mysocket", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", help="the CA that signed the server's certificate (default: the system's)")
    parser.add_argument("--message", default="ping")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.cafile)
    try:
        reply = asyncio.run(ping(args.host, args.port, context, args.message, args.timeout))
    except NotImplementedError as err:
        print(f"mysocket: {err}: not implemented yet (write it in mysocket.py)", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as err:   # ssl.SSLError is an OSError
        print(f"mysocket: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if reply != args.message:
        print(f"mysocket: the server answered {reply!r}, not {args.message!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
