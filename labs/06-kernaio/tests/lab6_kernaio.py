"""Lab 6's grader helpers: run a coroutine on a fresh loop with a deadline, trace a reader, run probes.

The tests import `kernaio` in their own process: the plugin puts the implementation's py/
first on sys.path, so it is the learner's package (with their aio_context.c compiled in place
by the grader) or the reference. A coroutine that waits for a completion that never comes
fails after a few seconds with what was seen (the engine's queue, the eventfd, where the loop's
thread waited) and advice, never at pytest's hard timeout.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from grading.deadline import where_threads_wait
from grading.plugin import Impl
from grading.programs import DataFile, Report, died, last_lines, parse_report
from xray import proc, strace
from xray.doctor import check_kernel_aio, check_o_direct, require

T = TypeVar("T")
LEFT_BEHIND = ("The kernel has finished those requests long ago, and bumped the eventfd for them; it was read back "
               "to 0, so it will not wake the loop for them again: they wait to be reaped. After a slice that "
               "was full (ctx.reap gave its limit), reap again (_after_slice) before waiting for the eventfd.")
STUCK = ("no completion arrived: does Engine.start schedule ONE _flush with call_soon, does _flush "
         "call ctx.submit, and does _on_completions reap and complete each request?")


def require_kaio() -> None:
    """Raise xray.Unavailable (the test is skipped, saying why) without kernel AIO or O_DIRECT here."""
    require(check_kernel_aio, check_o_direct)


def engine_state(loop: asyncio.AbstractEventLoop) -> str:
    """What the loop's kernaio engine holds, read without touching the kernel: requests queued, in
    flight, the eventfd's counter (from /proc/self/fdinfo) and whether the loop watches it."""
    from kernaio import _engine
    try:
        engine = _engine._engines.get((id(loop), "aio"))
        if engine is None:
            return "this loop has no kernaio engine: no request was ever started"
        ctx, efd = engine.ctx, engine.ctx.fileno()
        count = int(proc.fdinfo(os.getpid(), efd).get("eventfd-count", "0"), 16)
        selector = getattr(loop, "_selector", None)
        watched = ("" if selector is None else
                   ", and the loop watches it" if efd in selector.get_map() else ", and the loop does NOT watch it")
        return (f"{len(engine.queue)} requests queued (not given to the kernel yet), {ctx.in_flight} in flight in "
                f"the kernel, {ctx.free} slots free, {engine.submit_calls} io_submit calls made; the eventfd "
                f"(fd {efd}) holds {count}{watched}")
    except (AttributeError, OSError, ValueError) as err:   # an engine of another shape: say what is known
        return f"(the engine's state could not be read: {err!r})"


def run(main: Callable[[], Awaitable[T]], seconds: float = 10, *, uvloop: bool = False) -> T:
    """Run main() on a new event loop (uvloop's if asked); fail after `seconds` with what was seen then
    (the engine's queue, what is in flight, the eventfd, where the loop's thread waited) and advice.

    Not asyncio.run: at its end it waits for every cancelled task to finish, and a File's close waits
    for the kernel to give its requests back, so a stuck engine would hang it until pytest's timeout.
    """
    require_kaio()
    loop: asyncio.AbstractEventLoop
    if uvloop:
        import uvloop as uv
        loop = uv.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    loop_thread = threading.get_native_id()
    seen: list[str] = []
    look = threading.Timer(max(seconds - 0.3, 0), lambda: seen.append(where_threads_wait(loop_thread)))
    try:
        task = asyncio.ensure_future(main(), loop=loop)
        look.start()
        loop.run_until_complete(asyncio.wait({task}, timeout=seconds))
        look.cancel()
        if task.done():
            return task.result()
        state = engine_state(loop)
        task.cancel()
        loop.run_until_complete(asyncio.wait({task}, timeout=2))   # its cleanup, if it can
        raise AssertionError(f"still waiting after {seconds:g} s. The engine: {state}. Where the threads were:\n"
                             f"{''.join(seen) or '    (not seen)'}\n"
                             + (LEFT_BEHIND if re.search(r"[1-9]\d* in flight .* holds 0,", state) else STUCK))
    finally:
        look.cancel()
        look.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


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
    assert not tr.timed_out, (f"lab6_reader.py {count} did not finish in 60 s under strace, and was stopped. Where "
                              f"its threads waited:\n{tr.stuck or '    (not seen)'}\nWhat it printed last:\n"
                              f"{last_lines(tr.stdout + tr.stderr)}\n{STUCK}")
    assert tr.returncode == 0, f"lab6_reader.py failed ({died(tr.returncode)}):\n{tr.stderr[-3000:]}"
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
