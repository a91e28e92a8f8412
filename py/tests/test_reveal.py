"""`make reveal`, run for real (fewer reads than the default), and its verdict rules on made-up figures."""
import json
import subprocess
import sys

import pytest

from paths import ROOT
from reveal.__main__ import workload
from reveal.analyze import Row, decide, io_calls
from reveal.probes import PROBES
from reveal.report import agreement, table
from reveal.run import Config, Tools, Workload
from xray import strace, timeline
from xray.strace import Call

NUMBER = (int, float, type(None))
REQUIRED = {"api": str, "file_mode": str, "read_size": int, "reads": int, "user_threads": (int, type(None)),
            "kernel_threads": (int, type(None)), "io_syscalls": dict, "io_thread": (str, type(None)),
            "device_wait_ms": NUMBER, "device_wait_longest_ms": NUMBER, "waited_passes": (int, type(None)),
            "passes": int, "submit_ms": NUMBER, "submit_longest_ms": NUMBER, "verdict": str, "reason": str}
THREADED = ["asyncio.to_thread(os.pread)", "loop.run_in_executor(None, os.pread)", "aiofiles",
            "aiofile (caio thread)", "aiofile (caio python)", "glibc POSIX aio (posixaio, lab 4)",
            "lab 3: miniloop run_in_executor(os.pread)", "lab 3: miniloop AsyncFile.read"]
SIZES = ("16 KiB", "4 MiB")
# The module's fixture runs the whole reveal (about 50 s alone, twice that on a busy machine) inside
# the first test's time: give it the fixture's own limit (240 s) and a margin, not pytest.ini's 120 s.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def reveal(tmp_path_factory):
    """The rows of one real run: every API, fewer reads than make reveal's (64 of 16 KiB, 8 of 4 MiB; about 50 s)."""
    strace.check()     # no strace or no perf here: the plugin turns Unavailable into a skip that says so
    timeline.check()
    out = tmp_path_factory.mktemp("reveal")
    proc = subprocess.run([sys.executable, "-m", "reveal", "--reads", "16Kx64", "--reads", "4Mx8", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((out / "reveal.json").read_text())
    by_key = {(r["api"], r["file_mode"], "4 MiB" if r["read_size"] == 4 << 20 else "16 KiB"): r for r in rows}
    return out, proc.stdout, by_key, rows


def test_the_json_has_every_row_with_the_promised_fields(reveal):
    out, stdout, by_key, rows = reveal
    assert isinstance(rows, list)
    assert set(by_key) == {(api, mode, size) for api in PROBES for mode in ("buffered", "O_DIRECT") for size in SIZES}
    for row in rows:
        for name, kind in REQUIRED.items():
            assert isinstance(row[name], kind), f"{row['api']} {row['file_mode']}: {name} = {row[name]!r}"
        assert row["verdict"] in ("threads", "blocks-loop", "kernel-async", "unavailable"), row
        assert row["reason"], f"{row['api']} {row['file_mode']}: a verdict without a reason"
        if row["verdict"] != "unavailable":
            assert row["timed_by"] == "perf" and row["passes"] == 3, row
    for name in ("threads-16KiB.png", "threads-4MiB.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "reveal.txt").read_text()
    assert all(api in text and api in stdout for api in PROBES)
    assert "Small reads: 64 reads of 16 KiB" in text and "Large reads: 8 reads of 4 MiB" in text
    assert "DEGRADED" not in text, "perf and strace both run here: nothing is degraded"
    assert stdout.count("] ") >= len(rows), "one progress line per row"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("api", THREADED)
def test_thread_based_apis_read_on_threads_and_the_loop_never_waits(reveal, api, size):
    row = reveal[2][api, "buffered", size]
    assert row["verdict"] == "threads", row
    assert row["user_threads"] > 0 and row["io_thread"] == "other", row
    assert row["waited_passes"] == 0 and row["device_wait_ms"] == 0, f"the loop thread waited for the device: {row}"


@pytest.mark.parametrize("size", SIZES)
def test_caio_linux_aio_on_a_buffered_file_waits_for_the_device_inside_io_submit(reveal, size):
    row = reveal[2]["aiofile (caio linux)", "buffered", size]
    assert row["verdict"] == "blocks-loop", row
    assert row["io_thread"] == "loop", f"a read ran on another thread: {row}"
    assert row["device_wait_call"] == "io_submit" and row["device_wait_ms"] > 0, row
    assert row["waited_passes"] >= 2, row
    assert not {"read", "pread64", "preadv", "preadv2"} & row["io_syscalls"].keys(), row


@pytest.mark.parametrize("size", SIZES)
def test_kernaio_on_o_direct_never_waits_for_the_device(reveal, size):
    row = reveal[2]["kernaio (io_submit, lab 6)", "O_DIRECT", size]
    assert row["verdict"] == "kernel-async", row
    assert row["io_thread"] == "loop" and row["user_threads"] == 0, row
    assert row["waited_passes"] <= 1, f"the loop waited for the device in most passes: {row}"
    buffered = reveal[2]["kernaio (io_submit, lab 6)", "buffered", size]
    assert buffered["verdict"] == "blocks-loop" and buffered["device_wait_call"] == "io_submit", buffered


# --- the rules, on traces written by hand --------------------------------------------------

def call(tid, name, args, result, start, duration):
    return Call(tid, name, args, result, start, duration)


def test_io_calls_follow_the_data_files_descriptor_only():
    calls = [call(1, "openat", 'AT_FDCWD, "other.bin", O_RDONLY', "3", 0.0, 1e-5),
             call(1, "openat", 'AT_FDCWD, "data.bin", O_RDONLY|O_DIRECT', "4", 0.1, 1e-5),
             call(2, "pread64", '3, "", 4096, 0', "4096", 0.2, 1e-4),
             call(2, "pread64", '4, "", 4096, 0', "4096", 0.3, 1e-4),
             call(1, "read", '5, "\\1\\0\\0\\0\\0\\0\\0\\0", 8', "8", 0.4, 1e-5),   # an eventfd
             call(1, "io_submit", "0x7f, 1, [...]", "1", 0.5, 1e-5),
             call(1, "close", "4", "0", 0.6, 1e-5),
             call(2, "pread64", '4, "", 4096, 0', "4096", 0.7, 1e-4)]   # 4 is no longer data.bin
    assert [(c.name, c.start) for c in io_calls(calls, "data.bin")] == [("pread64", 0.3), ("io_submit", 0.5)]


def perf_row(mode="buffered", **fields):
    base = dict(timed_by="perf", passes=3, waited_passes=0, device_wait_ms=0.0, submit_ms=0.1, submit_longest_ms=0.05,
                submit_call="io_submit")
    return Row("x", mode, 16384, 64, **{**base, **fields})


def test_verdict_precedence():
    row = perf_row(user_threads=4, io_syscalls={"pread64": 8}, io_thread="other", io_threads=4, waited_passes=3,
                   device_wait_ms=30.0, device_wait_call="io_submit")
    decide(row)
    assert row.verdict == "threads"      # reads on other threads win, whatever the loop did
    row = perf_row(user_threads=1, io_syscalls={"io_submit": 8}, io_thread="loop", waited_passes=2,
                   device_wait_ms=12.0, device_wait_longest_ms=3.0, device_wait_call="io_submit")
    decide(row)
    assert row.verdict == "blocks-loop" and "1 thread(s) created, but no read ran on them" in row.reason
    assert "waited for the device 12.0 ms in all, 3.0 ms at most, in io_submit" in row.reason, row.reason
    assert "2 of 3 passes" in row.reason, row.reason
    row = perf_row(user_threads=0, io_syscalls={"pread64": 8}, io_thread="loop", waited_passes=3,
                   device_wait_ms=5.0, device_wait_call="pread64")
    decide(row)
    assert row.verdict == "blocks-loop"  # a plain read on the loop thread that waits for the disk


def test_a_long_call_that_did_not_wait_is_a_cost_not_a_verdict():
    # io_uring on a cold buffered file: io_uring_enter takes 1.4 ms of CPU (it starts the readahead itself).
    row = perf_row(io_syscalls={"io_uring_enter": 16}, io_thread="loop", user_threads=0, submit_ms=11.0,
                   submit_longest_ms=1.4, submit_call="io_uring_enter")
    decide(row)
    assert row.verdict == "kernel-async", row.reason
    assert "kept the loop busy 11.0 ms without waiting" in row.reason and "1.4 ms at most" in row.reason, row.reason


def test_one_pass_in_three_does_not_make_a_wait():
    row = perf_row("O_DIRECT", io_syscalls={"io_submit": 13, "io_getevents": 16}, io_thread="loop", user_threads=0,
                   waited_passes=1, device_wait_ms=0.0)
    decide(row)
    assert row.verdict == "kernel-async", row.reason


def test_without_perf_a_stall_is_stracess_longest_call_and_says_so():
    row = Row("x", "buffered", io_syscalls={"io_submit": 8}, io_thread="loop", user_threads=0, timed_by="strace",
              strace_longest_ms=5.0, strace_longest_call="io_submit")
    decide(row)
    assert row.verdict == "blocks-loop" and "under strace (its delay included" in row.reason, row.reason
    row.strace_longest_ms, row.verdict = 0.3, "unavailable"
    decide(row)
    assert row.verdict == "kernel-async" and "made no call of 1 ms or more under strace" in row.reason, row.reason


def test_agreement_puts_each_rows_verdicts_side_by_side():
    def run(*verdicts):
        return [Row(api, "buffered", 16384, 64, verdict=v) for api, v in zip("ab", verdicts)]
    text, agreed = agreement([run("threads", "kernel-async"), run("threads", "kernel-async")])
    assert agreed and "2 of 2 rows gave the same verdict in all 2 runs" in text
    text, agreed = agreement([run("threads", "kernel-async"), run("threads", "blocks-loop")])
    assert not agreed and "1 of 2 rows" in text
    (line,) = [x for x in text.splitlines() if x.split()[2:3] == ["b"]]   # "16 KiB  b  buffered ..."
    assert line.split()[-3:] == ["kernel-async", "blocks-loop", "NO"], line


def test_reads_option():
    assert workload("16Kx256") == Workload(16 << 10, 256) and workload("4Mx16") == Workload(4 << 20, 16)
    assert workload("8192x3") == Workload(8192, 3)
    with pytest.raises(Exception, match="SIZExCOUNT"):
        workload("16K")


def test_the_sampler_names_a_thread_strace_would_count():
    from xray import proc
    from xray.sampler import ThreadSampler
    code = "import threading, time; t = threading.Thread(target=time.sleep, args=(0.3,)); t.start(); t.join()"
    with proc.launch([sys.executable, "-c", code]) as p:
        with ThreadSampler(p.pid, interval=0.005) as sampler:
            p.wait(timeout=10)
    assert len(sampler.user_threads()) == 1 and not sampler.kernel_workers(), sampler.threads()


def test_the_header_says_which_figures_are_degraded_and_why():
    config = Config(workloads=(Workload(16384, 4),))
    rows = [Row("x", "buffered", 16384, 4, verdict="kernel-async", reason="r", timed_by="strace")]
    text = table(rows, config, Tools(strace=None, perf="perf_event_paranoid=3 forbids it", direct=None))
    assert "DEGRADED: perf cannot run here (perf_event_paranoid=3 forbids it)" in text, text
    assert "under perf" not in text.split("DEGRADED")[0], "the title must not claim perf ran"
    assert "DEGRADED" not in table(rows, config, Tools(strace=None, perf=None, direct=None))
