# The talk's slide "Some Python code, at last!": asyncio's sock_recv of 2019, as printed,
# run on today's asyncio in place of its own. py/tests/test_slides.py runs this file.
#
#   python3 slides/snippets/sock_recv_as_printed.py
#
# Predict before you run it: the first recv finds nothing; what does the loop do until the
# data comes, and who wakes the coroutine up?
import asyncio
import functools
import socket


class TalkLoop(asyncio.SelectorEventLoop):
    """asyncio's own loop, with the talk's sock_recv instead of today's (which refuses SSL sockets)."""

    async def sock_recv(self, sock, n):
        """Receive data from the socket.
        The return value is a bytes object representing the data received.
        The maximum amount of data to be received at once is specified by
        nbytes.
        """
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self.add_reader(fd, self._sock_recv, fut, sock, n)
        fut.add_done_callback(
            functools.partial(self._sock_read_done, fd))
        return await fut


async def main():
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    loop.call_later(0.05, theirs.send, b"ping")   # the data comes later: sock_recv has to wait
    data = await loop.sock_recv(ours, 256)
    watched = ours.fileno() in loop._selector.get_map()   # did the done-callback remove the reader?
    print(f"received {data!r}; the loop still watches the socket: {watched}")
    ours.close()
    theirs.close()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=TalkLoop) as runner:
        runner.run(main())
