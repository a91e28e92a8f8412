"""Run one pytest session of a lab's grader and watch it from outside: the runner's half.

    outcome = run_session(argv, env, cwd=ROOT, log=LOG, deadline=900)
    outcome.tests      # nodeid -> record, for every test collected (not run ones included)
    outcome.problem    # "" or what went wrong with the session itself: a crash, a hang, a bad -k

The learner's code runs inside pytest, so pytest cannot be trusted to report on itself: a
segfault in a C extension kills it before it writes anything, a C loop holding the GIL cannot
be interrupted by pytest-timeout's signal, and a forked child keeps the result pipe open after
pytest has gone. So the plugin (plugin.py) tells this side, over a pipe, which tests were
collected, which one starts and how each ended; and this side

- starts pytest in a process group of its own, so the whole tree the learner's code made can
  be killed (and is, when the session ends: nothing the learner started outlives grading);
- kills the group when one test runs past its own time limit plus a grace period, or the
  whole session past the lab's deadline, and says which test was running and where each of
  its threads waited (/proc/PID/task/TID/wchan);
- turns a death by signal into "the tests crashed (SIGSEGV) while running test_x", with the
  last lines pytest wrote;
- counts every collected test that never reported as "not run", which is never a pass.

Nothing is read from an earlier session: the records come only from this one's pipe.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from xray.proc import where_they_wait

# pytest's exit codes (pytest.ExitCode): 0 all passed, 1 some failed, 2 interrupted (a
# collection error, too), 3 internal error, 4 usage error (a bad -k), 5 no tests collected.
TESTS_RAN = (0, 1)
EXIT_GRACE = 10.0   # seconds pytest may take to exit after its last test


def grace(limit: float) -> float:
    """How long past a test's own time limit (pytest-timeout's, which should fire first) the
    runner waits before it stops the session: a quarter more, at least 5 s."""
    return max(5.0, limit / 4)


@dataclass
class Outcome:
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)   # nodeid -> record
    problem: str = ""          # what went wrong with the session itself, for the learner
    returncode: int = 0
    selected_none: bool = False   # -k matched nothing (or pytest rejected it): the caller's mistake


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for a message."""
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in text)


def crash_excerpt(path: Path, most: int = 20) -> str:
    """What a crashed pytest left in its log: Python's faulthandler dump, where there is one,
    without the frames of pytest's own machinery, so the learner's line comes first; else the tail."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    start = text.find("Fatal Python error")
    if start < 0:
        return tail(path, most)
    machinery = ("site-packages", "<frozen ")
    lines = [line for line in text[start:].splitlines() if line.strip() and not any(m in line for m in machinery)]
    return "\n".join("    " + line for line in lines[:most])


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group (from /proc/PID/stat's 5th field)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()   # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return sorted(members)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_session(argv: list[str], env: dict[str, str], cwd: Path, log: Path, deadline: float,
                on_test: Callable[[str, dict[str, Any]], None] | None = None) -> Outcome:
    """Run pytest (argv) with the plugin's pipe as GRADE_LIVE_FD; see the module's docstring.

    on_test(nodeid, record) is called as each test ends, for a live display.
    """
    outcome = Outcome()
    read_end, write_end = os.pipe()
    started = time.monotonic()
    finished: list[float] = []                 # when pytest said its session was over
    limits: dict[str, float] = {}              # nodeid -> pytest-timeout's limit for it
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as log_file:
        pytest = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=dict(env, GRADE_LIVE_FD=str(write_end)), cwd=cwd, pass_fds=[write_end],
                                  start_new_session=True)
        os.close(write_end)
        try:
            running, killed_why, stuck, buffered = _watch(pytest, read_end, outcome, limits, finished, started,
                                                          deadline, on_test)
        except BaseException:
            # Ctrl-C (or any error) here: pytest runs in a session of its own, so the terminal's
            # SIGINT never reached it. End it and whatever it started before going.
            kill_group(pytest.pid)
            os.close(read_end)
            pytest.wait()
            raise
        # What is still in the pipe (pytest may have written its last lines and exited
        # between two looks), without waiting for a writer that may never close it.
        os.set_blocking(read_end, False)
        try:
            while chunk := os.read(read_end, 65536):
                buffered += chunk
        except BlockingIOError:
            pass
        for line in buffered.split(b"\n"):
            if line.strip():
                running = _event(json.loads(line), outcome, limits, running, on_test, finished)
        os.close(read_end)
        pytest.wait()
    outcome.returncode = pytest.returncode
    leftovers = group_members(pytest.pid)
    if leftovers:  # the learner's code started processes that outlived the tests: end them
        left_text = where_they_wait(leftovers)
        kill_group(pytest.pid)
        if not killed_why:
            outcome.problem = (f"{len(leftovers)} processes started by the tests were still running after "
                               f"the tests ended; they were killed:\n{left_text}")
    if killed_why:
        outcome.problem = (f"{killed_why}. They were stopped. Where each process waited:\n"
                           + (stuck or "    (no process left to look at)")
                           + f"\nThe last lines of the log:\n{tail(log)}")
        if running:
            _mark(outcome, running[0], f"hung: still running after {time.monotonic() - running[1]:.0f} s "
                                       "and stopped by the runner (a wait that never ends?)")
    elif pytest.returncode < 0:
        where = f"while running {_short(running[0])}" if running else "outside any test"
        outcome.problem = (f"the tests crashed ({signal_name(pytest.returncode)}) {where}. "
                           f"What the process said as it died:\n{crash_excerpt(log)}")
        if running:
            _mark(outcome, running[0], f"crashed ({signal_name(pytest.returncode)}) while this test ran: "
                                       "the process died, so the test could not report")
    elif pytest.returncode in (4, 5) and not any(r["outcome"] != "not run" for r in outcome.tests.values()):
        outcome.selected_none = True
        outcome.problem = f"no test ran (pytest exit {pytest.returncode}):\n{tail(log, 6)}"
    elif pytest.returncode not in TESTS_RAN:
        outcome.problem = (f"pytest stopped before the tests could be judged (exit {pytest.returncode}):\n"
                           f"{tail(log, 25)}")
    return outcome


def _watch(pytest: subprocess.Popen[bytes], read_end: int, outcome: Outcome, limits: dict[str, float],
           finished: list[float], started: float, deadline: float,
           on_test: Callable[[str, dict[str, Any]], None] | None
           ) -> tuple[tuple[str, float] | None, str, str, bytes]:
    """Read the plugin's events until pytest's pipe closes, or stop the session when it runs
    past a limit. Returns (the test running at the end, why the session was stopped or "",
    where its processes waited, what is left unparsed in the pipe's buffer)."""
    running: tuple[str, float] | None = None   # (nodeid, when it started)
    killed_why = stuck = ""
    buffered = b""
    pipe_open = True
    while pipe_open:
        ready, _, _ = select.select([read_end], [], [], 1.0)
        if ready:
            chunk = os.read(read_end, 65536)
            pipe_open = bool(chunk)
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                running = _event(json.loads(line), outcome, limits, running, on_test, finished)
        now = time.monotonic()
        limit = limits.get(running[0], 120.0) if running else 0.0
        if running and now - running[1] > limit + grace(limit):
            killed_why = (f"the tests hung: {_short(running[0])} was still running after "
                          f"{now - running[1]:.0f} s (its limit is {limit:g} s)")
        elif finished and pytest.poll() is None and now - finished[0] > EXIT_GRACE:
            killed_why = (f"pytest did not exit {EXIT_GRACE:g} s after its last test: something the "
                          "learner's code started keeps it alive (a thread that never ends? a "
                          "non-daemon worker that ignores shutdown?)")
        elif now - started > deadline:
            killed_why = f"the tests hung: they were still running after {deadline:g} s, the lab's deadline"
        elif pytest.poll() is not None and pipe_open:
            # pytest has ended, yet something it started still holds the pipe: a forked child.
            pipe_open = False
        if killed_why:
            stuck = where_they_wait(group_members(pytest.pid))
            kill_group(pytest.pid)
            break
    return running, killed_why, stuck, buffered


def _short(nodeid: str) -> str:
    return nodeid.rpartition("::")[2] or nodeid


def _mark(outcome: Outcome, nodeid: str, message: str) -> None:
    record = outcome.tests.setdefault(nodeid, {"outcome": "not run", "duration": 0.0, "message": ""})
    record.update(outcome="failed", message=message, crashed=True)


def _event(event: dict[str, Any], outcome: Outcome, limits: dict[str, float],
           running: tuple[str, float] | None, on_test: Callable[[str, dict[str, Any]], None] | None,
           finished: list[float]) -> tuple[str, float] | None:
    """Take one line from the plugin; return which test is running now."""
    kind = event.pop("event")
    if kind == "finished":
        finished.append(time.monotonic())
        return None
    if kind == "collected":
        for nodeid, record in event["tests"].items():
            limits[nodeid] = float(record.pop("timeout", 120.0) or 120.0)
            outcome.tests[nodeid] = record
        return running
    nodeid = event.pop("nodeid")
    if kind == "start":
        return (nodeid, time.monotonic())
    outcome.tests.setdefault(nodeid, {}).update(event)     # kind == "result"
    if on_test:
        on_test(nodeid, outcome.tests[nodeid])
    return None
