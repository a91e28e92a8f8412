"""xray against real programs: what strace and /proc report for a thread, a socket, a sleeper."""
import os
import sys

from xray import proc, strace

THREAD_AND_SOCKET = """
import socket, threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
s = socket.socket(); s.setblocking(False)
try:
    s.recv(1)
except OSError:
    pass
print("done", flush=True)
"""


def test_strace_sees_a_hidden_thread_and_a_failed_recv():
    tr = strace.run([sys.executable, "-c", THREAD_AND_SOCKET], trace="network")
    assert tr.returncode == 0 and tr.stdout == "done\n"
    assert len(tr.threads_created) == 1 and tr.main_tid not in tr.threads_created
    (recv,) = tr.named("recvfrom")
    assert recv.retval == -1 and recv.errno == "ENOTCONN"


def test_launch_gives_the_traced_programs_pid_and_lines():
    with strace.launch([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(5)"]) as run:
        assert run.readline(timeout=10) == "ready"
        assert len(proc.threads(run.pid)) == 1
        run.terminate()
        tr = run.finish(timeout=10)
    assert not tr.timed_out and tr.returncode != 0  # stopped by SIGTERM


def test_proc_reads_flags_and_cpu_time():
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        assert proc.fd_flags(os.getpid(), r) & os.O_NONBLOCK
        assert proc.fds(os.getpid())[w].startswith("pipe:")
    finally:
        os.close(r)
        os.close(w)
    with proc.launch(["sleep", "2"]) as p:
        assert proc.wait_until(lambda: proc.state(p.pid) == "S", timeout=5)
        assert proc.cpu_seconds(p.pid) < 0.5
