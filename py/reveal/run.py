"""Run every probe twice -- once plain (the heartbeat), once under strace -f -- and fill the rows.

Per row (one API, one kind of file):

1. a plain run (`python -m reveal.probe`, no tracer) while /proc/PID/task is sampled:
   the heartbeat's worst lateness, the reads' duration, the kernel's threads; and the
   answer "cannot run here" when that is the answer (the traced run is then skipped);
2. two runs under `strace -f -ttt -T` (only the I/O calls are stopped for), sampled
   too: the threads created, the calls that moved the bytes and on which thread, the
   longest I/O call of the loop thread (the smaller of the two runs' longest: see
   analyze.fill_from_trace).

Every run starts from a cold page cache: the probe drops the file's pages first. The
probes run in the data directory and name the file without a directory, so strace's
openat shows the whole name (it cuts long strings) and the descriptor can be followed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reveal.analyze import TRACE, Row, TracedRun, decide, fill_from_trace, workers_during
from reveal.probe import HELLO
from reveal.probes import PROBES
from xray import Unavailable, proc, strace
from xray.doctor import DATA_DIR, check_o_direct
from xray.sampler import ThreadSampler

ROOT = Path(__file__).resolve().parents[2]
MODES = ("buffered", "O_DIRECT")


@dataclass(frozen=True)
class Config:
    """What every probe reads, and how. The defaults take under a minute on a 2-core VM."""

    file_size: int = 64 << 20     # the data file, made once in the labs' data directory
    block_size: int = 4 << 20     # big reads: a buffered io_submit that reads 4 MiB stalls visibly
    blocks: int = 16              # reads per run
    concurrency: int = 4          # reads in flight at once
    stall_ms: float = 1.0         # a loop-thread I/O call at least this long is a stall
    traced_runs: int = 2          # a stall counts when it is there in every traced run
    apis: tuple[str, ...] = ()    # only these APIs (all when empty)

    @property
    def data_file(self) -> Path:
        """In the labs' data directory: build/data, or $LAB_DATA_DIR (never tmpfs: O_DIRECT)."""
        return DATA_DIR / f"reveal-{self.file_size >> 20}MiB.bin"


def make_data_file(config: Config) -> Path:
    """Create the data file once (random bytes, written to the disk); reuse it afterwards."""
    path = config.data_file
    if path.exists() and path.stat().st_size == config.file_size:
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as f:
        for _ in range(config.file_size >> 20):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())   # dirty pages cannot be dropped from the cache: write them out now
    partial.rename(path)
    return path


def probe_argv(api: str, mode: str, config: Config) -> list[str]:
    return [sys.executable, "-m", "reveal.probe", api, mode, config.data_file.name,
            "--block-size", str(config.block_size), "--blocks", str(config.blocks),
            "--concurrency", str(config.concurrency)]


def probe_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "py"), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("CAIO_IMPL", None)   # the probe sets it for the caio rows; nobody else's must leak in
    return env


def parse_result(stdout: str, stderr: str, what: str) -> dict[str, Any]:
    """The probe's JSON line (its last line of output)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{what}: the probe printed no result ({' | '.join(tail) or 'no output'})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def hello(line: str, what: str) -> int:
    """The pid in the probe's first line (see reveal.probe)."""
    if not line.startswith(HELLO):
        raise RuntimeError(f"{what}: the probe did not start ({line or 'no output'!r})")
    return int(line.split()[-1])


def plain_run(api: str, mode: str, config: Config) -> tuple[dict[str, Any], ThreadSampler]:
    """The probe without a tracer, its threads sampled from /proc while it runs."""
    what = f"{api} {mode}"
    with proc.launch(probe_argv(api, mode, config), cwd=DATA_DIR, env=probe_env(), stderr=subprocess.PIPE) as p:
        try:
            first = p.readline(timeout=60)
        except TimeoutError:
            first = ""
        if not first.startswith(HELLO):   # it died at start: its stderr says why
            _, err = p.communicate(timeout=10)
            raise RuntimeError(f"{what}: the probe did not start: {err.decode(errors='replace').strip()[-300:]}")
        with ThreadSampler(hello(first, what)) as sampler:
            try:
                out, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{what}: the probe did not finish in 120 s") from None
    stdout = p.lines.rest() + out.decode(errors="replace")
    return parse_result(stdout, err.decode(errors="replace"), what), sampler


def traced_run(api: str, mode: str, config: Config) -> TracedRun:
    """The probe under strace -f, sampled from /proc too (strace cannot see the kernel's threads)."""
    what = f"{api} {mode} (traced)"
    with strace.launch(probe_argv(api, mode, config), trace=TRACE, cwd=DATA_DIR, env=probe_env(),
                       stdin=subprocess.DEVNULL) as run:
        try:
            pid = hello(run.readline(timeout=60), what)
        except (TimeoutError, RuntimeError):
            trace = run.finish(timeout=10)
            raise RuntimeError(f"{what}: the probe did not start: {trace.stderr.strip()[-300:]}") from None
        with ThreadSampler(pid) as sampler:
            trace = run.finish(timeout=180)
    result = parse_result(trace.stdout, trace.stderr, what)
    if result["t_start"] is None or result["t_end"] is None:
        raise RuntimeError(f"the traced run did not read: {result['error'] or result['unavailable']}")
    if result["error"]:
        raise RuntimeError(f"the traced probe failed: {result['error']}")
    return TracedRun(result, trace, workers_during(sampler.kernel_workers(), result))


def o_direct_problem() -> str | None:
    """Why O_DIRECT cannot be used in the data directory (make doctor's own test), or None."""
    ok, seen, todo = check_o_direct()
    return None if ok else f"{seen}; {todo}"


def measure(api: str, mode: str, config: Config, strace_problem: str | None, direct_problem: str | None) -> Row:
    """One row, measured."""
    row = Row(api, mode)
    if mode == "O_DIRECT" and direct_problem:
        row.reason = direct_problem
        return row
    result, sampler = plain_run(api, mode, config)
    workers = workers_during(sampler.kernel_workers(), result) if result["t_end"] else []
    if result["heartbeat_max_late_ms"] is not None:
        row.heartbeat_late_ms = round(result["heartbeat_max_late_ms"], 3)
    row.kernel_threads = len(workers)
    row.kernel_thread_names = [w.name for w in workers]
    if result["bytes"] is not None and result["error"] is None:
        row.read_ms = round((result["t_end"] - result["t_start"]) * 1e3, 3)
    row.bytes = result["bytes"]
    if result["error"]:
        row.reason = f"the probe failed: {result['error']}"
        return row
    if strace_problem:
        row.user_threads = len(sampler.user_threads())
        row.reason = (result["unavailable"] or "no strace here, so no syscalls and no stall: only the "
                      "heartbeat and the threads seen in /proc were measured")
        return row
    if result["unavailable"] and result["t_start"] is None:
        row.reason = result["unavailable"]   # it never started reading: nothing to trace
        return row
    runs = [traced_run(api, mode, config) for _ in range(config.traced_runs)]
    fill_from_trace(row, runs, config.data_file.name)
    if len(runs[0].workers) > len(workers):
        # Under strace the reads take longer: a short-lived kernel worker is easier to catch there.
        workers = runs[0].workers
    row.kernel_threads = len(workers)
    row.kernel_thread_names = [w.name for w in workers]
    if result["unavailable"]:
        # It tried and the kernel said no (O_DIRECT with an unaligned buffer): the calls it made
        # are measured and shown, but there is no verdict on reads that did not happen.
        row.reason = result["unavailable"]
        return row
    decide(row, config.stall_ms)
    return row


def run_all(config: Config, progress: Callable[[str], None] = print) -> list[Row]:
    """Every row, in the table's order; progress gets one line per finished row."""
    make_data_file(config)
    try:
        strace.check()
        strace_problem = None
    except Unavailable as err:
        strace_problem = str(err)
        progress(f"strace cannot run here, so the table has no syscalls and no stalls: {err}")
    direct_problem = o_direct_problem()
    if direct_problem:
        progress(f"O_DIRECT is not available here, so its rows are skipped: {direct_problem}")
    apis = [a for a in PROBES if not config.apis or a in config.apis]
    rows: list[Row] = []
    total = len(apis) * len(MODES)
    width = max(len(api) for api in apis)
    for api in apis:
        for mode in MODES:
            began = time.monotonic()
            try:
                row = measure(api, mode, config, strace_problem, direct_problem)
            except (RuntimeError, OSError, Unavailable) as err:   # one broken row must not stop the others
                row = Row(api, mode, reason=f"the measurement failed: {err}")
            rows.append(row)
            progress(f"[{len(rows):2}/{total}] {api:<{width}}  {mode:<8}  {row.verdict:<12} "
                     f"({time.monotonic() - began:.1f} s)")
    return rows
