"""echo_load, the echo benchmark's load generator: right numbers from a good server, a clear error from a bad one.

The bad servers are tiny Python servers in this process (a thread per connection), each
wrong in one way: a byte changed, a connection closed early, a byte too many, silence.
"""
import json
import resource
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from grading.programs import parse_report
from grading.servers import wait_port
from paths import ROOT
from xray import proc

# A server's answer to the bytes it got: (connection's bytes so far, chunk) -> what to send back, None to hang up.
Answer = Callable[[int, bytes], bytes | None]


def load(impl, port: int, *args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(impl.bin("echo_load")), "--port", str(port), *args], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


@contextmanager
def python_server(answer: Answer) -> Iterator[int]:
    """A threaded TCP server on 127.0.0.1 that answers each chunk with answer(); yields its port."""
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            seen = 0
            try:
                while chunk := self.request.recv(65536):
                    reply = answer(seen, chunk)
                    seen += len(chunk)
                    if reply is None:
                        return
                    self.request.sendall(reply)
            except OSError:   # echo_load gave up on us and reset the connection: that is the point
                pass

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    with Server(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()


@pytest.fixture
def rx_echo(impl) -> Iterator[int]:
    with proc.launch([str(impl.bin("rx_echo")), "--port", "0"], stdin=subprocess.DEVNULL) as server:
        yield wait_port(server, "rx_echo", timeout=10)


@pytest.mark.parametrize("size", [64, 200_000])   # 200 kB: sends and echoes come back in pieces
def test_against_rx_echo_every_round_trip_is_counted_and_verified(impl, rx_echo, size):
    ran = load(impl, rx_echo, "--connections", "10", "--size", str(size), "--rounds", "20", "--warmup", "2")
    assert ran.returncode == 0, ran.stderr
    report = parse_report(ran.stdout)
    assert report.count("connected", r"(\d+) connections") == 10
    assert report.count("requests", r"(\d+) in") == 200
    assert report.count("verified", r"(\d+) bytes") == (200 + 10 * 2) * size
    seconds, rate = report.number("requests", r"in ([0-9.]+) s"), report.number("requests", r"([0-9.]+) per second")
    assert seconds > 0 and rate == pytest.approx(200 / seconds, rel=0.01)
    p50, p99, top = (report.number("latency", rf"{p} ([0-9.]+) us") for p in ("p50", "p99", "max"))
    assert 0 < p50 <= p99 <= top < seconds * 1e6
    assert ran.stderr == ""


def test_sync_stops_after_the_warm_up_and_after_the_report_until_told_to_go(impl, rx_echo):
    argv = [str(impl.bin("echo_load")), "--port", str(rx_echo), "--connections", "5", "--rounds", "10", "--sync"]
    with proc.launch(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as load:
        assert load.readline().startswith("echo_load: ")
        assert load.readline().startswith("connected: 5 connections")
        assert load.readline().startswith("warm-up: 5 round trips")
        with pytest.raises(TimeoutError):
            load.readline(timeout=0.3)    # it waits for us: no timed round trip yet
        load.stdin.write(b"go\n")
        load.stdin.flush()
        lines = [load.readline() for _ in range(4)]
        assert [line.partition(":")[0] for line in lines] == ["requests", "latency", "verified", "cpu"], lines
        assert "waited" in lines[3]
        assert parse_report("\n".join(lines)).count("requests", r"(\d+) in") == 50
        assert len(proc.sockets(load.pid)) == 5, "the connections stay open until we say go again"
        load.stdin.close()                # end of file counts as go
        assert load.wait(timeout=5) == 0


def test_total_is_shared_out_among_the_connections(impl, rx_echo):
    ran = load(impl, rx_echo, "--connections", "10", "--total", "25")
    assert ran.returncode == 0, ran.stderr
    assert parse_report(ran.stdout).count("requests", r"(\d+) in") == 25


def corrupt(seen: int, chunk: bytes) -> bytes:
    """Echo, but the byte at stream offset 100 of every connection comes back changed."""
    data = bytearray(chunk)
    if seen <= 100 < seen + len(chunk):
        data[100 - seen] ^= 0x20
    return bytes(data)


@pytest.mark.parametrize("answer, words", [
    (corrupt, "byte 36 of the 64-byte echo is 0x"),   # offset 100 = round trip 2 (after 64 bytes), byte 36
    (lambda seen, chunk: chunk if seen < 64 else None, "the server closed the connection after echoing 0 of 64"),
    (lambda seen, chunk: chunk + b"!", "65 bytes came back but only 64 were sent"),
])
def test_a_server_that_gets_the_echo_wrong_is_reported(impl, answer, words):
    with python_server(answer) as port:
        ran = load(impl, port, "--connections", "3", "--size", "64", "--rounds", "5", "--warmup", "0")
    assert ran.returncode == 1, f"echo_load accepted a wrong echo: {ran.stdout}{ran.stderr}"
    assert words in ran.stderr, ran.stderr
    assert "round trip 2" in ran.stderr or "round trip 1" in ran.stderr, ran.stderr
    assert "requests:" not in ran.stdout


def test_a_silent_server_is_a_timeout_that_says_where_it_stopped(impl):
    with python_server(lambda seen, chunk: b"") as port:   # reads, never answers
        ran = load(impl, port, "--connections", "2", "--rounds", "3", "--timeout", "1")
    assert ran.returncode == 1
    assert "nothing happened for 1 s, 2 connections still waiting" in ran.stderr, ran.stderr
    assert "got 0 of 64 bytes of round trip 1 back" in ran.stderr, ran.stderr


def test_no_server_is_a_setup_error(impl):
    with socket.socket() as unused:   # a port nobody listens on (bound, not listening)
        unused.bind(("127.0.0.1", 0))
        ran = load(impl, unused.getsockname()[1], "--connections", "2")
    assert ran.returncode == 2
    assert "Connection refused (is the server listening?)" in ran.stderr, ran.stderr


def test_too_few_file_descriptors_is_said_before_any_connection(impl, rx_echo):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    ran = load(impl, rx_echo, "--connections", "1000", preexec_fn=limit)
    assert ran.returncode == 2
    assert "1000 connections need 1016 file descriptors, but this process may open at most 256" in ran.stderr, \
        ran.stderr
    assert "connected:" not in ran.stdout


def test_usage_errors(impl):
    for args in (["--connections", "2"], ["--port", "1", "--rounds", "3", "--total", "9"],
                 ["--port", "1", "--size", "0"], ["--port", "1", "--connections", "10", "--total", "5"]):
        ran = subprocess.run([str(impl.bin("echo_load")), *args], capture_output=True, text=True, timeout=10)
        assert ran.returncode == 2 and ran.stderr, (args, ran.stderr)


def test_the_echo_benchmark_quick_run_writes_its_outputs(impl, tmp_path):
    """python -m bench --only echo --quick: every server, both scenarios, the ratios (about 5 s)."""
    ran = subprocess.run([sys.executable, "-m", "bench", "--only", "echo", "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=100, cwd=ROOT, env=impl.env())
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    doc = json.loads((tmp_path / "echo.json").read_text())
    servers = ["C reactor", "mini loop", "asyncio", "uvloop", "threads"]
    assert [r["server"] for r in doc["rows"]] == servers * 2
    for row in doc["rows"]:
        assert row["error"] is None, row
        assert row["requests"] == row["connections"] * row["rounds"], row
        assert row["rps"] > 0 and 0 < row["p50_us"] <= row["p99_us"], row
        assert row["server_cpu_s"] >= 0 and row["threads"] >= 1, row
    by = {(r["server"], r["connections"]): r for r in doc["rows"]}
    assert by["threads", 1000]["threads"] > 1000, "one thread per connection, plus the acceptor"
    assert all(by[s, 1000]["threads"] == 1 for s in servers[:4]), "the event loops are one thread"
    base = by["asyncio", 100]["rps"]
    assert doc["ratios_to_asyncio"]["uvloop"]["100 conn x 64 B"]["rps"] == pytest.approx(
        by["uvloop", 100]["rps"] / base, rel=0.01)
    assert "C reactor vs uvloop:" in doc["reactor_vs_uvloop"]["text"]
    assert (tmp_path / "echo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "C reactor vs uvloop:" in (tmp_path / "echo.txt").read_text()
