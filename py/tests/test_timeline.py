"""xray.timeline: perf script's events to spans (written by hand), and one live recording where perf works."""
import os
import sys

from reveal.costs import majority, pass_cost
from xray import timeline
from xray.timeline import Span, Timeline

# Process 500: its loop thread 500 enters io_submit, sleeps in D state (woken by an interrupt
# 2 ms later, back on a CPU 0.5 ms after that), leaves io_submit; a kernel thread of its own
# (iou-sqp-500, tid 502) runs; process 900 (someone else) makes a pread64 we must not keep.
EVENTS = """\
  500/500   100.000000: raw_syscalls:sys_enter: NR 209 (7f, 1, 5624, 0, 0, 0)
  500/500   100.001000: sched:sched_switch: prev_comm=python prev_pid=500 prev_prio=120 prev_state=D ==> next_comm=swapper/0 next_pid=0 next_prio=120
    0/0     100.003000: sched:sched_wakeup: comm=python pid=500 prio=120 target_cpu=000
  900/900   100.003100: raw_syscalls:sys_enter: NR 17 (3, 7f, 4096, 0, 0, 0)
  900/900   100.003200: raw_syscalls:sys_exit: NR 17 = 4096
  900/900   100.003500: sched:sched_switch: prev_comm=other prev_pid=900 prev_prio=120 prev_state=S ==> next_comm=python next_pid=500 next_prio=120
  500/500   100.004000: raw_syscalls:sys_exit: NR 209 = 1
  500/500   100.004100: sched:sched_switch: prev_comm=python prev_pid=500 prev_prio=120 prev_state=R+ ==> next_comm=iou-sqp-500 next_pid=502 next_prio=120
  500/502   100.005100: sched:sched_switch: prev_comm=iou-sqp-500 prev_pid=502 prev_prio=120 prev_state=S ==> next_comm=python next_pid=500 next_prio=120
  500/500   100.005200: syscalls:sys_enter_io_getevents: ctx_id: 0x7f, min_nr: 0x0, nr: 0x1
  500/500   100.005210: syscalls:sys_exit_io_getevents: 0x1
"""
NUMBERS = {209: "io_submit", 17: "pread64"}


def test_calls_are_the_processes_own_named_by_number_or_by_tracepoint():
    t = timeline.parse(EVENTS, 500, NUMBERS)
    assert [(c.tid, c.what) for c in t.calls] == [(500, "io_submit"), (500, "io_getevents")]
    assert abs(t.calls[0].ms - 4.0) < 1e-6


def test_a_sleep_ends_when_the_thread_is_woken_and_knows_the_call_it_was_in():
    t = timeline.parse(EVENTS, 500, NUMBERS)
    (wait,) = t.sleeps_of(500, "D")
    assert wait.during == "io_submit" and abs(wait.ms - 2.0) < 1e-6   # woken at .003, not back on a CPU at .0035
    (preempted,) = t.sleeps_of(500, "R")
    assert preempted.during is None and abs(preempted.ms - 1.0) < 1e-6


def test_the_kernels_threads_of_the_process_are_named_and_their_cpu_time_seen():
    t = timeline.parse(EVENTS, 500, NUMBERS)
    assert t.workers() == {502: "iou-sqp-500"}
    assert [(s.tid, round(s.ms, 3)) for s in t.on_cpu if s.tid == 502] == [(502, 1.0)]


def test_pass_cost_splits_a_call_into_device_wait_and_the_rest():
    t = timeline.parse(EVENTS, 500, NUMBERS)
    cost = pass_cost(t, 500, 99.0, 101.0)
    assert cost.calls == 2 and cost.waited and cost.wait_call == "io_submit"
    assert abs(cost.device_wait_ms - 2.0) < 1e-6 and abs(cost.longest_wait_ms - 2.0) < 1e-6
    assert abs(cost.submit_ms - (2.0 + 0.01)) < 1e-6 and cost.submit_call == "io_submit"
    later = pass_cost(t, 500, 100.005, 101.0)   # io_getevents alone
    assert later.calls == 1 and not later.waited and later.submit_call == "io_getevents"
    assert abs(later.submit_ms - 0.01) < 1e-6


def test_a_wait_outside_the_io_calls_is_not_a_wait_of_theirs():
    # A page fault in D state between two calls (Python reading its own .pyc): not the API's doing.
    t = Timeline(1, calls=[Span(1, "io_submit", 0.0, 0.001)], sleeps=[Span(1, "D", 0.002, 0.010)])
    assert not pass_cost(t, 1, 0.0, 1.0).waited


def test_a_verdict_needs_more_than_half_of_the_passes():
    assert majority(2, 3) and majority(3, 3) and not majority(1, 3) and not majority(1, 2)


def test_a_live_recording_counts_the_preads_of_the_main_thread(tmp_path):
    timeline.check()   # perf not permitted here: the plugin turns Unavailable into a skip that says so
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(1 << 16))

    def preads(n):
        code = (f"import os; fd = os.open({str(data)!r}, os.O_RDONLY)\n"
                f"for i in range({n}): os.pread(fd, 4096, i * 4096)\nprint(os.getpid())")
        rec = timeline.record([sys.executable, "-c", code], ["pread64"])
        assert rec.returncode == 0, rec.stderr
        pid = int(rec.stdout.split()[-1])
        assert rec.timeline.pid == pid
        return len(rec.timeline.calls_of(pid))

    # The dynamic loader makes a few pread64s of its own at start: the 7 are on top of those.
    assert preads(7) - preads(0) == 7
