"""`make reveal`, run for real (fewer blocks than the default), and its verdict rules on made-up traces."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reveal.analyze import Row, decide, io_calls
from reveal.probes import PROBES
from xray import strace
from xray.strace import Call

REQUIRED = {"api": str, "file_mode": str, "user_threads": (int, type(None)), "kernel_threads": (int, type(None)),
            "io_syscalls": dict, "io_thread": (str, type(None)), "max_stall_ms": (float, int, type(None)),
            "verdict": str, "reason": str}
THREADED = ["asyncio.to_thread(os.pread)", "loop.run_in_executor(None, os.pread)", "aiofiles",
            "aiofile (caio thread)", "aiofile (caio python)", "glibc POSIX aio (posixaio, lab 4)",
            "lab 3: miniloop run_in_executor(os.pread)", "lab 3: miniloop AsyncFile.read"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reveal(tmp_path_factory):
    """The rows of one real run: every API, 8 reads of 4 MiB each instead of 16 (about 20 s)."""
    strace.check()   # no strace here: the plugin turns Unavailable into a skip that says so
    out = tmp_path_factory.mktemp("reveal")
    proc = subprocess.run([sys.executable, "-m", "reveal", "--blocks", "8", "--out", str(out)],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((out / "reveal.json").read_text())
    return out, proc.stdout, {(r["api"], r["file_mode"]): r for r in rows}, rows


def test_the_json_has_every_row_with_the_promised_fields(reveal):
    out, stdout, by_key, rows = reveal
    assert isinstance(rows, list)
    assert set(by_key) == {(api, mode) for api in PROBES for mode in ("buffered", "O_DIRECT")}
    for row in rows:
        for name, kind in REQUIRED.items():
            assert isinstance(row[name], kind), f"{row['api']} {row['file_mode']}: {name} = {row[name]!r}"
        assert row["verdict"] in ("threads", "blocks-loop", "kernel-async", "unavailable"), row
        assert row["reason"], f"{row['api']} {row['file_mode']}: a verdict without a reason"
    assert (out / "threads.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "reveal.txt").read_text()
    assert all(api in text and api in stdout for api in PROBES)
    assert stdout.count("] ") >= len(rows), "one progress line per row"


@pytest.mark.parametrize("api", THREADED)
def test_thread_based_apis_read_on_threads_that_are_not_the_loop(reveal, api):
    row = reveal[2][api, "buffered"]
    assert row["verdict"] == "threads", row
    assert row["user_threads"] > 0 and row["io_thread"] == "other", row
    assert row["max_stall_ms"] == 0, f"the loop thread made no I/O call of its own, yet: {row}"


def test_caio_linux_aio_on_a_buffered_file_stalls_the_loop_inside_io_submit(reveal):
    by_key = reveal[2]
    buffered = by_key["aiofile (caio linux)", "buffered"]
    assert buffered["verdict"] == "blocks-loop", buffered
    assert buffered["io_thread"] == "loop", f"a read ran on another thread: {buffered}"
    assert buffered["stall_call"] == "io_submit" and buffered["max_stall_ms"] >= 1.0, buffered
    assert not {"read", "pread64", "preadv", "preadv2"} & buffered["io_syscalls"].keys(), buffered
    direct = by_key["aiofile (caio linux)", "O_DIRECT"]
    if "io_submit" not in direct["loop_longest_ms"]:
        pytest.skip(f"no O_DIRECT io_submit to compare with: {direct['reason']}")
    # caio's own O_DIRECT buffer is not aligned, so the kernel refuses the read -- but only
    # after io_submit has returned: the submission itself does not wait for the disk.
    assert direct["loop_longest_ms"]["io_submit"] < buffered["max_stall_ms"], (direct, buffered)


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


def test_verdict_precedence():
    row = Row("x", "buffered", user_threads=4, io_syscalls={"pread64": 8}, io_thread="other", io_threads=4,
              max_stall_ms=30.0, stall_call="io_submit")
    decide(row, 1.0)
    assert row.verdict == "threads"      # reads on other threads win, whatever the loop did
    row = Row("x", "buffered", user_threads=1, io_syscalls={"io_submit": 8}, io_thread="loop", max_stall_ms=12.0,
              stall_call="io_submit")
    decide(row, 1.0)
    assert row.verdict == "blocks-loop" and "1 thread(s) created, but no read ran on them" in row.reason
    row = Row("x", "O_DIRECT", user_threads=0, io_syscalls={"io_submit": 8, "io_getevents": 4}, io_thread="loop",
              max_stall_ms=0.05, stall_call="io_submit")
    decide(row, 1.0)
    assert row.verdict == "kernel-async"
    row = Row("x", "buffered", user_threads=0, io_syscalls={"pread64": 8}, io_thread="loop", max_stall_ms=0.2,
              stall_call="pread64")
    decide(row, 1.0)
    assert row.verdict == "blocks-loop"  # a plain read on the loop thread waits for the disk, however fast


def test_the_sampler_names_a_thread_strace_would_count():
    from xray import proc
    from xray.sampler import ThreadSampler
    code = "import threading, time; t = threading.Thread(target=time.sleep, args=(0.3,)); t.start(); t.join()"
    with proc.launch([sys.executable, "-c", code]) as p:
        with ThreadSampler(p.pid, interval=0.005) as sampler:
            p.wait(timeout=10)
    assert len(sampler.user_threads()) == 1 and not sampler.kernel_workers(), sampler.threads()
