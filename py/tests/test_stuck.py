"""A program that hangs or crashes under a grader says what was seen: where each thread waited,
what it printed last, which signal ended it (grading.programs.run, grading.deadline)."""
from __future__ import annotations

import select
import sys
import threading
import time

import pytest

from grading.deadline import LoopStuck, deadline
from grading.programs import died, run

HANGS = """
import threading, time
print("started", flush=True)
lock = threading.Lock(); lock.acquire()
threading.Thread(target=lock.acquire).start()   # a second thread waits on the lock for ever
time.sleep(600)
"""


def test_a_program_that_does_not_end_is_described_before_it_is_stopped() -> None:
    with pytest.raises(AssertionError) as stuck:
        run([sys.executable, "-c", HANGS], 2, advice="the advice comes last")
    said = str(stuck.value)
    assert "did not finish in 2 s, and was stopped" in said
    assert "a lock or a condition variable" in said and "a sleep" in said, said    # the two threads
    assert "started" in said and said.endswith("the advice comes last")


def test_a_look_before_the_programs_own_watchdog() -> None:
    ran = run([sys.executable, "-c", "import time; time.sleep(1.5); print('done')"], 10, look_at=0.5)
    assert ran.returncode == 0 and ran.stdout == "done\n"
    assert "a sleep" in ran.seen


def test_a_crash_is_named_by_its_signal() -> None:
    ran = run([sys.executable, "-c", "import os; os.abort()"], 10)
    assert died(ran.returncode).startswith("killed by SIGABRT (abort()")
    assert died(3) == "exit code 3"


def test_a_stuck_loop_says_where_its_threads_waited() -> None:
    lock = threading.Lock()
    lock.acquire()
    worker = threading.Thread(target=lock.acquire, name="worker-1", daemon=True)
    worker.start()
    time.sleep(0.1)
    with pytest.raises(LoopStuck) as stuck, deadline(0.5, "run_until_complete", "some advice"):
        select.epoll().poll(10)
    lock.release()
    said = str(stuck.value)
    assert said.startswith("run_until_complete: still not done after 0.5 s. some advice")
    assert "the loop's thread: waiting in" in said and "(epoll_wait)" in said, said
    assert "worker-1: waiting in" in said and "a lock or a condition variable" in said, said
