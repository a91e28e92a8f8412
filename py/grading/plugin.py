"""The pytest plugin every lab grader uses (loaded by labs/conftest.py).

It gives tests the implementation under test, turns "this machine cannot trace"
into a skip that says why, and records every outcome for the runner.

    def test_client_is_nonblocking(impl):             # impl: Impl
        tr = strace.run([str(impl.bin("nb_client")), ...], trace="network")

A measure that the load of the machine made meaningless is neither a pass nor a failure:

    too_busy("the client reached its first recv only 0.1 s into the silence")

ends the test as "unjudged" (shown as such, never counted as passed: the lab is not done
until it is judged), with a message that says to run again.

Markers:
    @pytest.mark.hint("key")   the hints.md section to show a learner when this test fails
    @pytest.mark.smoke         may pass on the starter too (a check of the talk's code, not of the
                               learner's); `make test` does not require it to fail there

Environment:
    GRADE_IMPL=DIR     the implementation root (default: this checkout, i.e. the reference)
    GRADE_LIVE_FD=N    tell the runner, a JSON line each, what was collected, which test starts
                       and how each ended (session.py reads it: pytest may die mid-test)
"""
from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from grading.overlay import build
from grading.programs import died, run
from paths import ROOT
from xray import Unavailable

WATCHDOG = 5.0   # seconds the C self-test harness gives a check before it ends it (c/selftest/st.c)


@dataclass(frozen=True)
class Impl:
    """One implementation root: c/ and py/ of the reference, or of a learner's overlay."""

    root: Path

    def bin(self, name: str) -> Path:
        """A C program of this implementation, built into ROOT/build/bin."""
        return self.root / "build" / "bin" / name

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with this implementation's py/ first on PYTHONPATH (for child processes)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root / "py"), env.get("PYTHONPATH")]))
        env.update(extra)
        return env

    def python(self, module: str, *args: str) -> list[str]:
        """argv that runs `python -m module args` (pass env=impl.env() along)."""
        return [sys.executable, "-m", module, *args]

    def selftest(self, program: str, check: str, timeout: float = 20) -> None:
        """Run one check of a C self-test program (`rx_selftest create`).

        The programs share a harness (c/common/st.c): each check prints `ok NAME`, or
        `not ok NAME: why`, and that `why` becomes the failure a learner reads. The harness
        ends a check still running after 5 s (its watchdog); just before, the grader looks
        at where each of its threads waits, and a hang's message says that too.
        """
        ran = run([str(self.bin(program)), check], timeout, look_at=WATCHDOG - 0.5,
                  advice="A wait that never ends: see where each thread waits")
        lines = ran.stdout.strip().splitlines()
        if ran.returncode == 0 and lines == [f"ok {check}"]:
            return
        if ran.returncode < 0:
            raise AssertionError(f"{program} {check} was {died(ran.returncode)} before it could report: "
                                 f"run `{self.bin(program)} {check}` under gdb. Output: {ran.stdout.strip()!r}"
                                 + (f" {ran.stderr.strip()[-500:]!r}" if ran.stderr.strip() else ""))
        said = lines[-1] if lines else (f"{program} {check} printed nothing (exit code {ran.returncode}; stderr: "
                                        f"{ran.stderr.strip()!r})")
        if ran.seen and "still running after" in said:
            said += f"\nWhere its threads waited, {WATCHDOG - 0.5:g} s into the check:\n{ran.seen}"
        raise AssertionError(said)


def _impl_root() -> Path:
    return Path(os.environ.get("GRADE_IMPL") or ROOT).resolve()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hint(key): the hints.md section shown when this test fails")
    config.addinivalue_line("markers", "smoke: may pass on the starter as well (not the learner's code)")
    # In-process imports (`from miniloop.loop import EventLoop`) must get the code under test.
    sys.path.insert(0, str(_impl_root() / "py"))
    _outcomes.clear()


@pytest.fixture(scope="session")
def impl() -> Impl:
    """The implementation under test, with its C programs built (once per session)."""
    root = _impl_root()
    result = build(root)
    if result.returncode != 0:
        pytest.fail("the C code does not compile:\n" + result.stdout + result.stderr, pytrace=False)
    return Impl(root)


TOO_BUSY = "the machine was too busy to judge this"
MESSAGE_LINES = 12   # of a failure message shown by the runner; the log has all of it


def too_busy(why: str) -> NoReturn:
    """End the test as unjudged: the machine's load, not the learner's code, decided the measure."""
    pytest.skip(f"{TOO_BUSY}: {why}. Run again (on a quieter machine if it keeps happening)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    # A tool this machine lacks makes the test unanswerable here: skip it, saying why.
    try:
        return (yield)
    except Unavailable as err:
        pytest.skip(f"cannot run here: {err}")


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator[None, Any, Any]:
    # The same for a fixture (a data file on a filesystem without O_DIRECT, a tool it starts):
    # every test that needs it is skipped with the reason, not failed as an error in setup.
    try:
        return (yield)
    except Unavailable as err:
        pytest.skip(f"cannot run here: {err}")


# nodeid -> {"outcome": passed|failed|error|skipped|unjudged|not run, "duration", "message", "longrepr",
#            "hint", "smoke", "doc"}
# One pytest process grades one implementation, so a module-level record is enough.
_outcomes: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "not run", "duration": 0.0, "message": ""})
    entry["duration"] += report.duration
    if report.failed:  # in setup or teardown it means a fixture broke: the code was never judged
        entry["outcome"] = "failed" if report.when == "call" else "error"
    elif report.skipped:
        entry["outcome"] = "skipped"
    elif report.when == "call":
        entry["outcome"] = "passed"
    if report.failed or report.skipped:
        entry["message"] = _short(report)
    if report.skipped and entry["message"].startswith(TOO_BUSY):
        entry["outcome"] = "unjudged"
        entry["longrepr"] = str(report.longrepr)
    if report.when == "teardown":
        _tell_runner({"event": "result", "nodeid": report.nodeid,
                      **entry})


def _tell_runner(event: dict[str, Any]) -> None:
    """Send one event to the runner's pipe (GRADE_LIVE_FD), so it can print it at once and
    knows, if pytest dies, which test it died in. A separate fd, because pytest captures
    stdout and stderr while tests run."""
    fd = os.environ.get("GRADE_LIVE_FD")
    if fd:
        os.write(int(fd), (json.dumps(event) + "\n").encode())


def pytest_runtest_logstart(nodeid: str) -> None:
    _tell_runner({"event": "start", "nodeid": nodeid})


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every test that will run (after -k), with the time limit pytest-timeout gives it."""
    default = float(session.config.getini("timeout") or 0)
    tests = {}
    for item in session.items:
        marker = item.get_closest_marker("timeout")
        limit = float(marker.args[0]) if marker and marker.args else default
        tests[item.nodeid] = {**_outcomes.get(item.nodeid, {}), "timeout": limit or 120.0}
    _tell_runner({"event": "collected", "tests": tests})


def _short(report: pytest.TestReport) -> str:
    """One line that tells a learner what went wrong."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = text.strip().splitlines() or ["failed"]
    if crash is not None and not text.startswith(("AssertionError", "Failed")):
        # An exception from the code under test (NotImplementedError of a stub, a KeyError): say
        # where, relative to the checkout (the runner's directory), which the runner turns into
        # the learner's own file when it is one (grading.run.in_learners_files). The graders'
        # own exceptions (a LoopStuck, a test's) say what they saw already.
        where = os.path.relpath(crash.path) if crash.path.startswith(os.getcwd() + os.sep) else crash.path
        if not any(part in "/" + where for part in ("/tests/", "/py/grading/", "/py/xray/")):
            lines[0] += f"  (raised at {where}:{crash.lineno})"
    # The whole message the test wrote (a program's output after "failed (exit 1):" included),
    # up to pytest's own introspection of the assert statement, which says nothing new.
    kept = [lines[0]] + [line for line in itertools.takewhile(
        lambda line: not line.lstrip().startswith(("assert ", "+  where", "+    where")), lines[1:])]
    if len(kept) > MESSAGE_LINES:   # the first line, then the end, where a traceback says what failed
        kept = [kept[0], f"… ({len(kept) - MESSAGE_LINES + 1} lines: the log has them)", *kept[2 - MESSAGE_LINES:]]
    return "\n".join(kept).removeprefix("Failed: ")  # pytest.fail()'s own prefix says nothing to a learner


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        hint = item.get_closest_marker("hint")
        doc = (getattr(item, "function", None).__doc__ or "") if hasattr(item, "function") else ""
        _outcomes[item.nodeid] = {
            "outcome": "not run", "duration": 0.0, "message": "",
            "hint": hint.args[0] if hint else None,
            "smoke": item.get_closest_marker("smoke") is not None,
            "doc": doc.strip().split("\n")[0],
        }


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:  # `-k NAME` left these out: they are not part of this grading
        _outcomes.pop(item.nodeid, None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # From here on pytest should exit at once; the runner gives it a few seconds.
    _tell_runner({"event": "finished"})
