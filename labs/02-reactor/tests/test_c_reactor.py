"""Lab 2 grader: the rx reactor's API, checked by rx_selftest (c/reactor/rx_selftest.c, given).

Each test runs one named check of rx_selftest in its own process (a crash or a hang
in one check cannot take the others down) and reports its "not ok" line. By hand:

    build/bin/rx_selftest              # every check
    build/bin/rx_selftest timer_wait   # one
"""
from __future__ import annotations


import pytest

from grading.plugin import Impl
from xray import strace


def run_check(impl: Impl, name: str) -> None:
    """Run `rx_selftest name`; fail with its own explanation unless it prints `ok name`."""
    impl.selftest("rx_selftest", name)


@pytest.mark.hint("rx-create")
def test_create(impl: Impl) -> None:
    """rx_create makes an epoll instance, close-on-exec."""
    run_check(impl, "create")


@pytest.mark.hint("rx-add")
def test_errors_come_from_the_kernel(impl: Impl) -> None:
    """rx_add/rx_mod/rx_del return -EBADF, -EPERM, -EEXIST, -ENOENT as the kernel and the table say."""
    run_check(impl, "errors")


@pytest.mark.hint("rx-add")
def test_del_after_close_leaves_no_ghost(impl: Impl) -> None:
    """rx_del of an fd already closed returns -EBADF but forgets it, so its number can be added again."""
    run_check(impl, "del_after_close")


@pytest.mark.hint("rx-dispatch")
def test_readable(impl: Impl) -> None:
    """A pipe with data calls its callback with RX_READABLE and its arg, again while unread (level-triggered)."""
    run_check(impl, "readable")


@pytest.mark.hint("rx-dispatch")
def test_writable_and_mod(impl: Impl) -> None:
    """RX_WRITABLE comes from EPOLLOUT; rx_mod switches what is watched."""
    run_check(impl, "writable")


@pytest.mark.hint("rx-dispatch")
def test_hangup_is_reported(impl: Impl) -> None:
    """A pipe whose writer closed (EPOLLHUP) calls back with RX_READABLE, to read the end of file."""
    run_check(impl, "hangup")


@pytest.mark.hint("rx-dispatch")
def test_many_fds(impl: Impl) -> None:
    """200 ready pipes (several rounds of RX_MAX_EVENTS) each called once; an fd added mid-round works."""
    run_check(impl, "many_fds")


@pytest.mark.hint("rx-stale-events")
def test_del_in_callback(impl: Impl) -> None:
    """A callback that unregisters another fd (or its own) stops that fd's pending event of the same round."""
    run_check(impl, "del_in_callback")


@pytest.mark.hint("rx-stale-events")
def test_fd_number_reused_in_the_same_round(impl: Impl) -> None:
    """An event fetched for a closed fd is not delivered to a new fd that got the same number."""
    run_check(impl, "fd_reuse")


@pytest.mark.hint("rx-timers")
def test_timers_fire_in_order(impl: Impl) -> None:
    """Timers fire soonest first, equal deadlines in the order they were added; rx_run then returns."""
    run_check(impl, "timers_order")


@pytest.mark.hint("rx-timers")
def test_timer_cancel(impl: Impl) -> None:
    """A cancelled timer never fires, even when cancelled by another timer's callback."""
    run_check(impl, "timer_cancel")


@pytest.mark.hint("rx-timers")
def test_repeating_timer(impl: Impl) -> None:
    """A repeating timer fires every interval and may cancel itself from its callback."""
    run_check(impl, "timer_repeat")


@pytest.mark.hint("rx-timers")
def test_timer_added_by_a_timer_waits_a_round(impl: Impl) -> None:
    """A 0 ms timer added by a timer callback runs in the next round, not in a loop that starves I/O."""
    run_check(impl, "timer_readd")


@pytest.mark.hint("rx-timeout")
def test_timer_sets_the_epoll_timeout(impl: Impl) -> None:
    """With only a 200 ms timer, rx_run_once sleeps ~200 ms in one call, not a busy loop."""
    run_check(impl, "timer_wait")


@pytest.mark.hint("rx-timeout")
def test_run_once_timeout(impl: Impl) -> None:
    """rx_run_once(100) returns 0 after 100 ms when nothing happens; rx_run_once(0) at once."""
    run_check(impl, "run_once_timeout")


@pytest.mark.hint("rx-timeout")
def test_epoll_wait_gets_the_timer_timeout(impl: Impl) -> None:
    """Under strace: the 200 ms timer becomes epoll_wait's timeout argument (about 200, not 0 or -1)."""
    tr = strace.run([str(impl.bin("rx_selftest")), "timer_wait"], trace="epoll_wait,epoll_pwait", timeout=15)
    waits = tr.named("epoll_wait", "epoll_pwait")
    assert waits, f"strace saw no epoll_wait call (exit code {tr.returncode}; output {tr.stdout.strip()!r})"
    timeouts = [_timeout(c) for c in waits]
    assert len(waits) <= 3 and 150 <= timeouts[0] <= 200, (
        f"a 200 ms timer and nothing else: epoll_wait was called {len(waits)} times with timeouts "
        f"{timeouts[:6]}; expected one call with a timeout of about 200 (ms): the time left until the "
        "soonest deadline")


def _timeout(call: strace.Call) -> int:
    """The timeout argument of epoll_wait(fd, events, max, TIMEOUT) or epoll_pwait(..., TIMEOUT, mask, size)."""
    fields = call.args.rsplit(",", 3 if call.name == "epoll_pwait" else 1)
    return int(fields[1])


@pytest.mark.hint("rx-stop")
def test_stop(impl: Impl) -> None:
    """rx_stop from a callback makes rx_run return, though an fd is still registered."""
    run_check(impl, "stop")
