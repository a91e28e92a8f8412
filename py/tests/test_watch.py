"""`make watch`: grades again at each save, by inotify or by polling, survives a compile error,
and stops cleanly on Ctrl-C (leaving no grading behind)."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_runner import REFERENCE_C, workshop  # noqa: F401  (the fake workshop fixture)


def read_until(proc: subprocess.Popen[bytes], marker: str, seconds: float = 60) -> str:
    """What proc printed up to and including the line that contains marker (read straight
    from the pipe: a buffered reader would hold lines that select() then never announces)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen, deadline = "", time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 1)    # one byte at a time: stop right after the marker's line
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
            if seen.endswith("\n") and marker in seen.rsplit("\n", 2)[-2]:
                return seen
    raise AssertionError(f"{marker!r} never came (exit {proc.poll()}); the watch printed:\n{seen}")


@pytest.mark.parametrize("how", ["inotify", "poll"])
def test_watch_grades_each_save_and_stops_on_ctrl_c(workshop: Path, how: str) -> None:  # noqa: F811
    lab = workshop / "labs" / "01-fake"
    watch = subprocess.Popen([sys.executable, "-m", "grading.watch", "1", *(["--poll"] if how == "poll" else [])],
                             cwd=workshop, env=dict(os.environ, PYTHONPATH=str(workshop / "py")),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = read_until(watch, "watching")
        assert "3/3 passed" in first and "is done" in first and ("inotify" if how == "inotify" else "polling") in first
        (lab / "prog.c").write_text(REFERENCE_C.replace("return 0;", "return 0"))      # a compile error
        broken = read_until(watch, "watching")
        assert "does not compile" in broken and "labs/01-fake/prog.c" in broken, broken
        (lab / "prog.c").write_text(REFERENCE_C)
        (lab / "work.py").write_text("def answer():\n    return 41\n")                 # a wrong answer
        wrong = read_until(watch, "watching")
        assert "prog.c saved" in wrong or "work.py saved" in wrong
        if "1/3" not in wrong:   # the two saves may come as one grading or two
            wrong = read_until(watch, "watching")
        assert "1/3 passed" in wrong and "answer() must return 42" in wrong, wrong
        watch.send_signal(signal.SIGINT)
        assert "stopped watching" in read_until(watch, "stopped watching")
        assert watch.wait(10) == 0
    finally:
        watch.kill()
        watch.wait()
    left = subprocess.run(["pgrep", "-f", f"--rootdir {workshop}"], capture_output=True, text=True).stdout
    assert not left.strip(), "no grading may outlive the watch"
