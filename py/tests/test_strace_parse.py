"""The strace log parser, on logs written by hand in strace's own format."""
from xray.strace import _created, parse

LOG = """\
100 1700000000.000100 execve("./prog", ["./prog"], 0x7ffd /* 5 vars */) = 0 <0.000300>
100 1700000000.001000 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, child_tid=0x7f, parent_tid=0x7f, exit_signal=0, stack=0x7e, stack_size=0x7ff, tls=0x7f} => {parent_tid=[101]}, 88) = 101 <0.000050>
100 1700000000.002000 epoll_wait(4,  <unfinished ...>
101 1700000000.002100 pread64(5, "data = 1", 4096, 0) = 8 <0.000020>
101 1700000000.002200 +++ exited with 0 +++
100 1700000000.102000 <... epoll_wait resumed>[{events=EPOLLIN, data={u32=3, u64=3}}], 64, -1) = 1 <0.100000>
100 1700000000.103000 recvfrom(3, 0x7ffd, 4096, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) <0.000009>
100 1700000000.104000 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---
100 1700000000.105000 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 102 <0.000100>
100 1700000000.106000 read(7,  <unfinished ...>
"""


def test_calls_are_merged_and_ordered():
    calls, tids = parse(LOG)
    assert tids == {100, 101}
    assert [c.name for c in calls] == ["execve", "clone3", "epoll_wait", "pread64", "recvfrom", "clone", "read"]


def test_a_resumed_call_keeps_its_start_and_whole_duration():
    calls, _ = parse(LOG)
    wait = next(c for c in calls if c.name == "epoll_wait")
    assert wait.start == 1700000000.002
    assert wait.duration == 0.1
    assert wait.retval == 1
    assert "EPOLLIN" in wait.args


def test_errors_and_return_values():
    calls, _ = parse(LOG)
    recv = next(c for c in calls if c.name == "recvfrom")
    assert (recv.retval, recv.errno) == (-1, "EAGAIN")
    pread = next(c for c in calls if c.name == "pread64")
    assert (pread.retval, pread.errno, pread.tid) == (8, None, 101)


def test_arguments_split_at_top_level_commas_only():
    calls, _ = parse(LOG)
    wait = next(c for c in calls if c.name == "epoll_wait")
    assert [wait.arg(i) for i in range(4)] == ["4", "[{events=EPOLLIN, data={u32=3, u64=3}}]", "64", "-1"]
    assert wait.arg(9) == "" and wait.fd == 4
    clone = next(c for c in calls if c.name == "clone")
    assert clone.fd is None  # child_stack=NULL is not a number


def test_a_quoted_buffer_is_one_argument_whatever_bytes_it_holds():
    """Random bytes read from a file print as brackets, commas and escaped quotes: none of them
    may split the buffer or unbalance the brackets after it."""
    buffer = r'"\x01],\"[(,\\"'          # strace's escapes: \" is a quote, \\ a backslash
    calls, _ = parse(f"100 1700000000.000100 read(3, {buffer}, 4096) = 7 <0.000010>\n")
    read = calls[0]
    assert (read.arg(0), read.arg(1), read.arg(2), read.arg(3)) == ("3", buffer, "4096", "")


def test_a_call_still_running_at_the_end_has_no_duration():
    calls, _ = parse(LOG)
    read = calls[-1]
    assert (read.name, read.duration, read.retval) == ("read", None, None)


def test_threads_and_processes_are_told_apart():
    calls, _ = parse(LOG)
    assert _created(calls) == ([101], [102])
