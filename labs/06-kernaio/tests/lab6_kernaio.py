"""Lab 6's grader helpers: run a coroutine on a fresh loop with a deadline, trace a reader, run probes.

The tests import `kernaio` in their own process: the plugin puts the implementation's py/
first on sys.path, so it is the learner's package (with their _kernaio.c compiled in place
by the grader) or the reference. A coroutine that waits for a completion that never comes
fails after a few seconds with advice, never at pytest's hard timeout.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from grading.plugin import Impl
from grading.programs import DataFile, Report, parse_report
from xray import strace
from xray.doctor import check_kernel_aio, check_o_direct, require

T = TypeVar("T")
STUCK = ("no completion arrived: does Engine.start schedule ONE _flush with call_soon, does _flush "
         "call ctx.submit, and does _on_completions reap and complete each request?")


def require_kaio() -> None:
    """Raise xray.Unavailable (the test is skipped, saying why) without kernel AIO or O_DIRECT here."""
    require(check_kernel_aio, check_o_direct)


def run(main: Callable[[], Awaitable[T]], seconds: float = 10, *, uvloop: bool = False) -> T:
    """Run main() on a new event loop (uvloop's if asked); fail with advice after `seconds`."""
    require_kaio()

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(main(), seconds)
        except TimeoutError:
            raise AssertionError(f"still waiting after {seconds:g} s: {STUCK}") from None

    if uvloop:
        import uvloop as uv
        return uv.run(bounded())
    return asyncio.run(bounded())


HERE = Path(__file__).parent
READER = HERE / "lab6_reader.py"
_traces: dict[tuple[str, int, tuple[str, ...]], strace.Trace] = {}


def traced_reader(impl: Impl, data: DataFile, count: int, *options: str) -> strace.Trace:
    """lab6_reader.py under strace -f: `count` reads of 4 KiB made together (one gather).

    options are the reader's (--buffered, --idle SECONDS). One run serves every test that
    asks for the same one (tracing is slow on a busy machine); each test checks its exit.
    """
    require_kaio()
    key = (str(impl.root), count, options)
    if key not in _traces:
        argv = [sys.executable, str(READER), data.name, str(count), *options]
        _traces[key] = strace.run(argv, env=impl.env(), cwd=data.dir, timeout=60,
                                  trace="io_setup,io_submit,io_getevents,epoll_wait,read,write,eventfd2,clone,clone3")
    tr = _traces[key]
    assert tr.returncode == 0, f"lab6_reader.py failed (exit {tr.returncode}):\n{tr.stderr[-3000:]}"
    return tr


def run_probe(impl: Impl, data: DataFile, script: str, *args: str, timeout: float = 120) -> tuple[Report, str]:
    """Run one of the lab's probe scripts in a process of its own: its `key: value` lines, and
    "" or why it died.

    A crash (a signal: SIGABRT from glibc's heap checks, SIGSEGV) does not kill the grader: it
    becomes a message that names the signal and the last phase the probe reached, and the
    caller still judges what the probe printed before it died.
    """
    require_kaio()
    proc = subprocess.run([sys.executable, str(HERE / script), data.name, *args], env=impl.env(),
                          cwd=data.dir, capture_output=True, text=True, timeout=timeout)
    phases = [line.partition(": ")[2] for line in proc.stdout.splitlines() if line.startswith("phase: ")]
    died = ""
    if proc.returncode < 0:
        died = (
            f"the process died of {signal.Signals(-proc.returncode).name} during "
            f"'{phases[-1] if phases else 'its start'}'; it said: {proc.stderr.strip()[-500:] or 'nothing'}. "
            "Memory was freed or reused while the kernel still owned it: a slot and its buffer are "
            "given back only when the completion is reaped (slots_finish), never in cancel")
    else:
        assert proc.returncode == 0, f"{script} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return parse_report(proc.stdout), died


GIL_DELAY_MS = 20   # how long strace holds each io_submit, io_getevents and pread64 (see lab6_gil.py)


def gil_probe(impl: Impl, data: DataFile) -> Report:
    """lab6_gil.py under strace, each of its io_submit, io_getevents and pread64 held GIL_DELAY_MS
    at entry: the observer thread's steps during each (see lab6_gil.py)."""
    require_kaio()
    strace.check()
    calls = "pread64,io_submit,io_getevents"
    argv = ["strace", "-f", "-qq", "-o", os.devnull, "--seccomp-bpf", "-e", f"trace={calls}",
            "-e", f"inject={calls}:delay_enter={GIL_DELAY_MS * 1000}",
            "--", sys.executable, str(HERE / "lab6_gil.py"), data.name, str(GIL_DELAY_MS)]
    proc = subprocess.run(argv, env=impl.env(), cwd=data.dir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"lab6_gil.py failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return parse_report(proc.stdout)
