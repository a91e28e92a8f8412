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
        # BEGIN SOLUTION lab1
        # TODO: await asyncio.open_connection(host, port, ssl=the context,
        #   server_hostname=host) and keep the reader and writer it returns. Then
        #   start self._receive_loop() in the background with asyncio.create_task
        #   (we are inside the running loop here) and keep the task in self._receiver.
        # STUB: raise NotImplementedError("lab1: MySocket.connect")
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl_context, server_hostname=self.host)
        self._receiver = asyncio.create_task(self._receive_loop(), name=f"MySocket receiver {self.host}")
        # END SOLUTION

    async def send(self, text: str) -> None:
        """Send text, encoded as UTF-8; returns once the socket has taken it."""
        assert self._writer is not None, "call connect() first"
        # BEGIN SOLUTION lab1
        # TODO: write the encoded text with self._writer.write, then await
        #   self._writer.drain(): it waits while the send buffer is too full (flow control).
        # STUB: raise NotImplementedError("lab1: MySocket.send")
        self._writer.write(text.encode("utf-8"))
        await self._writer.drain()
        # END SOLUTION

    async def _receive_loop(self) -> None:
        """The background task: read, decode, queue the text; None at the end."""
        assert self._reader is not None
        # BEGIN SOLUTION lab1
        # TODO: make an incremental UTF-8 decoder (codecs.getincrementaldecoder).
        #   Loop: data = await self._reader.read(READ_SIZE); b"" means the server
        #   closed. Decode each piece (final=True on the last) and put any non-empty
        #   text on self._received. Whatever ends the loop (end of stream, an error,
        #   cancellation), put None on the queue last (try/finally).
        # STUB: raise NotImplementedError("lab1: MySocket._receive_loop")
        # errors="replace": a server that sends invalid UTF-8 gets U+FFFD, not a dead task.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while True:
                data = await self._reader.read(READ_SIZE)
                # A character cut in two by the read stays in the decoder until its end arrives.
                text = decoder.decode(data, final=not data)
                if text:
                    self._received.put_nowait(text)
                if not data:
                    return
        finally:
            self._received.put_nowait(None)
        # END SOLUTION

    async def receive(self, timeout: float | None = None) -> str:
        """The next piece of text from the server ("" once it has closed the connection).

        Pieces are cut wherever the network cut them; join them yourself.
        Raises TimeoutError when nothing arrives within timeout seconds.
        """
        # BEGIN SOLUTION lab1
        # TODO: once the end has been seen (self._at_eof), return "" at once.
        #   Otherwise await self._received.get() under asyncio.wait_for(…, timeout);
        #   None means the end: remember it in self._at_eof and return "".
        # STUB: raise NotImplementedError("lab1: MySocket.receive")
        if self._at_eof:
            return ""
        text = await asyncio.wait_for(self._received.get(), timeout)
        if text is None:
            self._at_eof = True
            return ""
        return text
        # END SOLUTION

    async def close(self) -> None:
        """Stop the receive task and close the connection (TLS close_notify included).

        Safe to call twice, or after a failed connect().
        """
        # BEGIN SOLUTION lab1
        # TODO: cancel self._receiver, then wait until it has finished with
        #   asyncio.wait([task]) (awaiting the task itself would raise its CancelledError
        #   here). Then close self._writer and await wait_closed(), ignoring connection
        #   errors: the peer may be gone already.
        # STUB: raise NotImplementedError("lab1: MySocket.close")
        if self._receiver is not None:
            self._receiver.cancel()
            # asyncio.wait lets the task finish without raising its CancelledError in here.
            # Suppressing CancelledError instead would also swallow a cancellation of
            # close() itself, and a caller's timeout around close() would never fire.
            await asyncio.wait([self._receiver])
            if not self._receiver.cancelled():
                self._receiver.exception()   # mark an error it died of as seen: closing anyway
            self._receiver = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await self._writer.wait_closed()
            self._writer = None
        # END SOLUTION

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
