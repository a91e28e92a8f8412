"""Lab 1's grader fixtures: the slow server the clients talk to, a TLS echo server with its test CA,
and the implementation's nb.c as a shared library, to call its functions one at a time.

Both servers are reference code (not the learner's files), so a fixture that starts
them can only break when the machine does; the learner's code runs in the tests.
"""
from __future__ import annotations

import contextlib
import ctypes
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from grading.servers import wait_port
from xray import proc


@pytest.fixture
def slow_server(impl) -> Iterator[Callable[..., int]]:
    """A factory: slow_server(delay_ms=...) starts c/nonblock/slow_server and returns its port.

    Every server started is stopped at the end of the test.
    """
    with contextlib.ExitStack() as stack:
        def start(delay_ms: int) -> int:
            argv = [str(impl.bin("slow_server")), "--port", "0", "--delay-ms", str(delay_ms)]
            server = stack.enter_context(proc.launch(argv, stderr=subprocess.DEVNULL))
            return wait_port(server, "slow_server", timeout=5)
        yield start


@dataclass(frozen=True)
class TLSFiles:
    ca: Path       # the test CA's certificate: what a client must trust
    server: Path   # the server's private key and certificate chain (127.0.0.1, localhost)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway CA and a server certificate, made by trustme for this test module."""
    trustme = pytest.importorskip("trustme", reason="the trustme package is missing: run `make setup`")
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(ca=folder / "ca.pem", server=folder / "server.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files.server))
    return files


@pytest.fixture(scope="module")
def tls_echo(impl, tls_files: TLSFiles) -> Iterator[int]:
    """The port of a running `python -m nonblock.tls_echo` that presents tls_files.server."""
    argv = impl.python("nonblock.tls_echo", "--port", "0", "--cert", str(tls_files.server))
    with proc.launch(argv, env=impl.env(), stderr=subprocess.DEVNULL) as server:
        yield wait_port(server, "nonblock.tls_echo", timeout=15)


@pytest.fixture(scope="module")
def nb_lib(impl, tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """The implementation's c/nonblock/nb.c compiled into a shared library, loaded with ctypes.

    nb_client only ever calls nb_wait in a process with no signal handler, so EINTR never
    happens there; from Python a test can call nb_wait with signals arriving. It is built
    with the same flags as c/Makefile (the program build has already shown it compiles).
    """
    source = impl.root / "c" / "nonblock" / "nb.c"
    library = tmp_path_factory.mktemp("nb") / "libnb.so"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("cannot run here: no C compiler (cc) on PATH: run `make setup`")
    subprocess.run([compiler, "-std=c11", "-D_GNU_SOURCE", "-O2", "-fPIC", "-shared", "-o", str(library),
                    str(source)], check=True, capture_output=True, timeout=60)
    lib = ctypes.CDLL(str(library))
    lib.nb_wait.argtypes = [ctypes.c_int, ctypes.c_short, ctypes.c_int]
    lib.nb_wait.restype = ctypes.c_int
    return lib
