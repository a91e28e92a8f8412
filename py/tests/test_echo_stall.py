"""The lab-2 echo server drops a client that leaves its echo unread past --stall-timeout-ms,
which gives back the kernel memory its full socket buffers hold; other clients go on."""
from __future__ import annotations

import socket
import subprocess
import time

from paths import ROOT

SERVER = ROOT / "build" / "bin" / "rx_echo"


def test_a_client_that_never_reads_is_dropped_and_the_others_go_on() -> None:
    server = subprocess.Popen([str(SERVER), "--port", "0", "--stall-timeout-ms", "300"],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int((server.stdout.readline() if server.stdout else "").rsplit(":", 1)[1])
        hog = socket.create_connection(("127.0.0.1", port))
        hog.setblocking(False)
        sent, started = 0, time.monotonic()
        dropped = False
        while time.monotonic() - started < 10 and not dropped:   # send, never read
            try:
                sent += hog.send(bytes(65536))
            except BlockingIOError:
                time.sleep(0.01)
            except (ConnectionResetError, BrokenPipeError):
                dropped = True
        assert dropped, f"the client sent {sent} bytes and read none, and still was not dropped after 10 s"
        assert sent > 1 << 20, f"dropped after only {sent} bytes: the echo cannot have been stuck that long"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as polite:
            polite.sendall(b"still here")
            assert polite.recv(64) == b"still here", "another client must still get its echo"
    finally:
        server.kill()
        server.wait()


def test_the_stall_timeout_is_checked() -> None:
    bad = subprocess.run([str(SERVER), "--stall-timeout-ms", "soon"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "--stall-timeout-ms MS" in bad.stderr
