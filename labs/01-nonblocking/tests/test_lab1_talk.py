"""Lab 1, the talk's own code: how the slides' MySocket and aiofile examples fail, and the repaired aiofile.

These tests check the talk's code (labs/01-nonblocking/talk/), not the learner's files,
so they pass on the starter as well: they are marked smoke. They keep the lab honest
about its claims: "the slide's MySocket does not work" and "the slide's aiofile
example is an IndentationError" are things you can run and see.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TALK = Path(__file__).resolve().parent.parent / "talk"


def expect(condition: object, message: str) -> None:
    """Fail with a message for the reader, without Python's assertion details."""
    if not condition:
        pytest.fail(message, pytrace=False)


# Smoke: the talk's code, not the learner's; it behaves the same on the starter.
@pytest.mark.smoke
@pytest.mark.hint("talk-code")
def test_talk_mysocket_as_printed_fails_silently(impl, tls_files, tls_echo):
    """The slide's MySocket exits 0 without ever printing the reply: a sleep never awaited, an SSLSocket refused."""
    # SSL_CERT_FILE makes the slide's ssl.create_default_context() trust the test CA.
    argv = [sys.executable, str(TALK / "mysocket_as_printed.py"), "127.0.0.1", str(tls_echo)]
    run = subprocess.run(argv, env=impl.env(SSL_CERT_FILE=str(tls_files.ca)), capture_output=True, text=True,
                         timeout=30)
    # How it fails, in the order it happens:
    # 1. connect() did a blocking TCP connect and TLS handshake, and send() wrote 'ping': the server got it.
    # 2. main() called asyncio.sleep(0.2) without await, so it returned at once: Python warns that
    #    the coroutine was never awaited, and asyncio.run() ends while the reply is on its way.
    expect("coroutine 'sleep' was never awaited" in run.stderr,
           f"expected the RuntimeWarning about the never-awaited sleep; stderr was {run.stderr[-800:]!r}")
    # 3. The receive task ran once, and loop.sock_recv refused the SSL socket with a TypeError
    #    that nobody retrieves: asyncio only logs it when the task is garbage-collected.
    expect("Socket cannot be of type SSLSocket" in run.stderr,
           f"expected sock_recv's TypeError about the SSLSocket; stderr was {run.stderr[-800:]!r}")
    # 4. And yet the program "succeeds": exit status 0, and no reply was ever printed.
    expect(run.returncode == 0, f"the slide's program exited with {run.returncode} (it used to 'succeed' with 0)")
    expect("<< " not in run.stdout, f"the slide's program printed a reply after all: {run.stdout!r}")


# Smoke: the talk's code, not the learner's; it behaves the same on the starter.
@pytest.mark.smoke
@pytest.mark.hint("talk-code")
def test_talk_aiofile_as_printed_is_an_indentation_error():
    """The slide's aiofile example does not even compile: the body of `async with` is not indented."""
    run = subprocess.run([sys.executable, str(TALK / "aiofile_as_printed.py")], capture_output=True, text=True,
                         timeout=30)
    expect(run.returncode != 0 and "IndentationError" in run.stderr,
           f"expected an IndentationError; exit status {run.returncode}, stderr {run.stderr[-400:]!r}")
    expect("expected an indented block after 'with' statement" in run.stderr,
           f"expected Python to point at the `async with` line; stderr {run.stderr[-400:]!r}")


# Smoke: the talk's code, not the learner's; it behaves the same on the starter.
@pytest.mark.smoke
@pytest.mark.hint("talk-code")
def test_talk_aiofile_fixed_leaves_a_nul_hole(tmp_path):
    """Repaired, it runs: "world" written at offset 7 after "Hello " leaves a NUL byte at offset 6."""
    pytest.importorskip("aiofile", reason="the aiofile package is missing: run `make setup`")
    target = tmp_path / "hello.txt"
    run = subprocess.run([sys.executable, str(TALK / "aiofile_fixed.py"), str(target)], capture_output=True,
                         text=True, timeout=30)
    expect(run.returncode == 0, f"aiofile_fixed.py failed: {run.stderr[-800:]}")
    expect(target.read_bytes() == b"Hello \0world",
           f"the file holds {target.read_bytes()!r}, expected b'Hello \\x00world'")
    expect(run.stdout.splitlines()[0] == repr("Hello \0world"),
           f"the program printed {run.stdout!r}, expected the text read back, NUL included")
