"""Lab 1 graders: the talk's MySocket client, fixed (py/nonblock/mysocket.py).

The slide's MySocket never worked (see test_lab1_talk.py for how it fails). The fixed
one must really talk TLS to a local echo server whose certificate comes from a test CA
(trustme), and do it the asyncio way:

  - connect() is a coroutine that leaves the event loop running during the TCP and TLS
    handshakes (a heartbeat task keeps ticking), and it checks the server's certificate;
  - send() then receive() round-trip 'ping';
  - a UTF-8 character whose bytes arrive in two reads is decoded whole;
  - close() cancels the receive task and closes the socket: nothing is left behind.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from grading.deadline import tasks_waiting, where_threads_wait
from grading.programs import died, run
from xray import proc


def expect(condition: object, message: str) -> None:
    """Fail with a message for the learner, without Python's assertion details."""
    if not condition:
        pytest.fail(message, pytrace=False)


def client_context(tls_files) -> ssl.SSLContext:
    """What a client needs to trust the test server: the test CA, and nothing else."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls_files.ca))


def queued_seconds() -> float:
    """How long the calling thread has waited for a CPU while ready to run, so far (0.0 when unknown)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def run_scenario(scenario: Callable[[], Awaitable[Any]], limit: float = 20.0) -> Any:
    """Run scenario() in a fresh event loop, in a thread of its own, and return its result.

    An unwritten method fails the test with its name. A scenario that waits forever fails
    after `limit` seconds; one whose loop is stuck in a blocking call (which no asyncio
    timeout can interrupt) fails a few seconds later, instead of stalling the grader.
    """
    outcome: dict[str, Any] = {}

    async def bounded() -> Any:
        task = asyncio.ensure_future(scenario())
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:   # say where each task waits before they are cancelled
            outcome["waiting"] = tasks_waiting()
            task.cancel()
            raise TimeoutError
        return task.result()

    def runner() -> None:
        outcome["thread"] = threading.get_native_id()
        try:
            outcome["value"] = asyncio.run(bounded())
        except BaseException as err:   # handed over to the test's thread below
            outcome["error"] = err

    thread = threading.Thread(target=runner, name="lab1-scenario", daemon=True)
    thread.start()
    thread.join(limit + 5)
    if thread.is_alive():
        pytest.fail(f"the event loop was still stuck after {limit + 5:.0f} s: a blocking call inside a "
                    "coroutine stops the whole loop, timeouts included. Where the threads were:\n"
                    + where_threads_wait(outcome["thread"]), pytrace=False)
    error = outcome.get("error")
    if isinstance(error, NotImplementedError):
        pytest.fail(f"{error}: not implemented yet", pytrace=False)
    if isinstance(error, TimeoutError):
        pytest.fail(f"the scenario did not finish within {limit:.0f} s: something waits forever (a receive loop "
                    "that died? a close() that waits for it?). The tasks, and where each one waited:\n"
                    + outcome.get("waiting", "    (not seen)"), pytrace=False)
    if error is not None:
        raise error
    return outcome["value"]


@contextlib.contextmanager
def tls_server_thread(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                      tls_files) -> Iterator[int]:
    """A TLS server with its own event loop in its own thread; yields its port.

    In its own loop, so that a client which wrongly blocks its loop cannot block the server too.
    """
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    def serve() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_files.server)
        server = loop.run_until_complete(asyncio.start_server(handler, "127.0.0.1", 0, ssl=context))
        port.append(server.sockets[0].getsockname()[1])
        started.set()
        loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=serve, name="lab1-tls-server", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the test's TLS server did not start")
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


async def collect(my_sock: Any, want: int | None = None, timeout: float = 5.0) -> tuple[str, str | None]:
    """Join receive() pieces until the end of the stream (or `want` characters).

    Returns (text, problem): problem says what went wrong, None when nothing did.
    """
    text = ""
    while want is None or len(text) < want:
        try:
            piece = await my_sock.receive(timeout)
        except TimeoutError:
            return text, f"receive() got nothing more within {timeout:.0f} s"
        if not isinstance(piece, str):
            return text, f"receive() returned {type(piece).__name__}, not str"
        if not piece:
            break
        text += piece
    return text, None


@pytest.mark.hint("mysocket-connect")
def test_mysocket_connect_does_not_block_the_loop(tls_files):
    """connect() is a coroutine: while the TLS handshake waits for a silent server, the loop keeps running."""
    from nonblock.mysocket import MySocket

    # A server that never accepts: the kernel completes the TCP handshake, but nobody ever
    # answers the TLS ClientHello. A connect() that blocks would wait forever, so a timer
    # closes the listener after 2 s, which resets the connection and ends any wait.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    closer = threading.Timer(2.0, listener.close)
    closer.start()

    async def scenario() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        gaps: list[float] = []

        async def heartbeat() -> None:
            # Each gap between two ticks, less the time the loop's thread waited for a CPU
            # meanwhile: on a busy machine that wait is the machine's doing, not connect()'s.
            last, queued = loop.time(), queued_seconds()
            while True:
                await asyncio.sleep(0.01)
                now, now_queued = loop.time(), queued_seconds()
                gaps.append((now - last) - (now_queued - queued))
                last, queued = now, now_queued

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        my_sock = MySocket("127.0.0.1", port, client_context(tls_files))
        try:
            await asyncio.wait_for(my_sock.connect(), 0.5)
            outcome = "connected"
        except TimeoutError:
            outcome = "still waiting"
        except NotImplementedError:
            raise
        except Exception as err:   # whatever a wrong connect() raises: reported below
            outcome = f"{type(err).__name__}: {err}"
        # Let the heartbeat wake once more: a stall that ends just now is its last, longest gap.
        await asyncio.sleep(0.05)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        with contextlib.suppress(Exception):
            await my_sock.close()
        return outcome, max(gaps, default=0.0)

    try:
        outcome, stall = run_scenario(scenario)
    finally:
        closer.cancel()
        listener.close()
    expect(stall < 0.3, f"the event loop stood still for {stall:.2f} s inside connect(): the connection and "
                        "the TLS handshake must be awaited (asyncio.open_connection), not done by blocking calls")
    expect(outcome == "still waiting",
           f"against a server that never answers the TLS handshake, connect() should still be waiting after "
           f"0.5 s (and be cancellable), but it ended with: {outcome}")


@pytest.mark.hint("mysocket-connect")
def test_mysocket_checks_the_certificate(tls_echo):
    """connect() verifies the server's certificate with the context it was given."""
    from nonblock.mysocket import MySocket

    async def scenario() -> str:
        # The system's CAs only: they do not know the test CA, so the handshake must fail.
        my_sock = MySocket("127.0.0.1", tls_echo, ssl.create_default_context())
        try:
            await my_sock.connect()
            outcome = "connected"
        except NotImplementedError:
            raise
        except ssl.SSLCertVerificationError:
            outcome = "refused"
        except Exception as err:
            outcome = f"{type(err).__name__}: {err}"
        with contextlib.suppress(Exception):
            await my_sock.close()
        return outcome

    outcome = run_scenario(scenario)
    expect(outcome == "refused",
           f"with a context that does not trust the test CA, connect() should raise ssl.SSLCertVerificationError, "
           f"but: {outcome}. Use the SSLContext MySocket was given, and never turn verification off")


@pytest.mark.hint("mysocket-send-receive")
def test_mysocket_ping_roundtrip(impl, tls_files, tls_echo):
    """`python -m nonblock.mysocket` sends 'ping' over TLS and prints the echo '<< ping'."""
    argv = impl.python("nonblock.mysocket", "--port", str(tls_echo), "--cafile", str(tls_files.ca))
    ran = run(argv, 20, env=impl.env(), advice="Does close() wait for a receive task that nobody cancelled?")
    expect(ran.returncode == 0 and "<< ping" in ran.stdout,
           f"no TLS round trip: {died(ran.returncode)}, printed {ran.stdout.strip()!r}, "
           f"errors {ran.stderr.strip()[-600:]!r}")


@pytest.mark.hint("mysocket-send-receive")
def test_mysocket_receive_gives_up_after_its_timeout(tls_files, tls_echo):
    """receive(timeout=0.3) when the server says nothing raises TimeoutError after ~0.3 s, and the connection lives on."""
    from nonblock.mysocket import MySocket

    timeout, patience = 0.3, 5.0

    async def scenario() -> tuple[str, float, str]:
        loop = asyncio.get_running_loop()
        my_sock = MySocket("127.0.0.1", tls_echo, client_context(tls_files))
        await my_sock.connect()
        started = loop.time()
        # Nothing was sent, so the echo server has nothing to say.
        receiving = asyncio.ensure_future(my_sock.receive(timeout))
        done, _ = await asyncio.wait({receiving}, timeout=patience)
        took = loop.time() - started
        if not done:
            receiving.cancel()
            await asyncio.wait({receiving})
            outcome = "still waiting"
        elif isinstance(receiving.exception(), TimeoutError):
            outcome = "TimeoutError"
        elif receiving.exception() is not None:
            raise receiving.exception()   # NotImplementedError and the like: reported by run_scenario
        else:
            outcome = f"returned {receiving.result()!r}"
        # After a time-out the conversation goes on: the next echo still arrives.
        await my_sock.send("ping")
        echo, problem = await collect(my_sock, want=4)
        await my_sock.close()
        return outcome, took, problem or echo

    outcome, took, after = run_scenario(scenario)
    expect(outcome != "still waiting", f"receive(timeout={timeout}) was still waiting {patience:.0f} s later, while the server "
                            "said nothing: wait for the queue under asyncio.wait_for(…, timeout)")
    expect(outcome == "TimeoutError",
           f"receive(timeout={timeout}) with nothing to receive {outcome} after {took:.2f} s: it should raise "
           "TimeoutError once the timeout has run out")
    expect(took >= 0.8 * timeout, f"receive(timeout={timeout}) gave up after only {took:.3f} s: wait the whole timeout")
    expect(after == "ping", f"after the time-out, the echo of 'ping' came back as {after!r}: a time-out must not "
                            "end the conversation (nor lose what arrives next)")


@pytest.mark.hint("mysocket-utf8")
def test_mysocket_utf8_split_between_reads(tls_files):
    """A character whose UTF-8 bytes arrive in two separate reads comes out whole."""
    from nonblock.mysocket import MySocket

    e_acute, check = "é".encode(), "✓".encode()   # 2 and 3 bytes
    parts = [b"caf" + e_acute[:1], e_acute[1:] + b" " + check[:2], check[2:] + b"!"]

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in parts:   # one TLS record each, with a pause: the client reads them apart
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.15)
        writer.close()

    async def scenario(port: int) -> tuple[str, str | None]:
        my_sock = MySocket("127.0.0.1", port, client_context(tls_files))
        await my_sock.connect()
        result = await collect(my_sock)
        await my_sock.close()
        return result

    with tls_server_thread(talk, tls_files) as port:
        text, problem = run_scenario(lambda: scenario(port))
    expect(problem is None and text == "café ✓!",
           f"the server sent 'café ✓!' cut in the middle of 'é' and of '✓'; the client got {text!r}"
           + (f" and then {problem}" if problem else "")
           + ". Decode with an incremental decoder, which keeps half a character until the rest arrives")


@pytest.mark.hint("mysocket-close")
def test_mysocket_close_leaves_nothing_behind(tls_files, tls_echo):
    """After close(): no task of MySocket still pending, its socket closed; a second close() is harmless."""
    from nonblock.mysocket import MySocket

    async def scenario() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        before_tasks = asyncio.all_tasks()
        before_sockets = len(proc.sockets(os.getpid()))
        my_sock = MySocket("127.0.0.1", tls_echo, client_context(tls_files))
        await my_sock.connect()
        await my_sock.send("ping")
        echo, problem = await collect(my_sock, want=4)
        started = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(my_sock.close(), 3)
        took = loop.time() - started
        await asyncio.sleep(0.05)   # let the transport's last callbacks run
        seen = {
            "echo": echo, "problem": problem, "took": took,
            "tasks": [t for t in asyncio.all_tasks() - before_tasks if t is not asyncio.current_task()],
            "sockets": len(proc.sockets(os.getpid())) - before_sockets,
        }
        try:
            await asyncio.wait_for(my_sock.close(), 3)
        except Exception as err:
            seen["second close"] = f"{type(err).__name__}: {err}"
        return seen

    seen = run_scenario(scenario)
    expect(seen["echo"] == "ping", f"the echo of 'ping' came back as {seen['echo']!r}"
           + (f" ({seen['problem']})" if seen["problem"] else ""))
    expect(seen["took"] < 2.0, f"close() took {seen['took']:.1f} s (the server was still connected, so the "
                               "receive task never ends by itself): cancel it, then wait for it")
    expect(not seen["tasks"], f"after close() these tasks are still pending: {seen['tasks']}. "
                              "close() must cancel the receive task and await it")
    expect(seen["sockets"] <= 0, f"after close() the process still has {seen['sockets']} more socket(s) open "
                                 "than before connect(): close the writer and await wait_closed()")
    expect("second close" not in seen, f"a second close() raised {seen.get('second close')}: make it harmless")
