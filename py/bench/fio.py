"""fio, the ceiling: the same 4 KiB random O_DIRECT reads at the same depth, from C.

    fio --name=bench --filename=FILE --direct=1 --rw=randread --bs=4k --iodepth=QD
        --ioengine=libaio|io_uring [--sqthread_poll=1] --runtime=S --time_based --output-format=json

One job, one process, no interpreter: what the device gives at this queue depth. Its JSON
gives the IOPS, its own CPU use (usr_cpu + sys_cpu: mostly the kernel's work for the reads,
which any API pays too) and the latency percentiles (lat: submission to completion, in
nanoseconds; --lat_percentiles=1).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from xray import Unavailable

# the row's name (fio (NAME)) -> fio's options for it. SQPOLL: fio's own io_uring reader with
# a kernel submission thread, what kernaio's sqpoll=True is held against (the best any reader
# with that thread does on this machine).
ENGINES = {"libaio": ["--ioengine=libaio"], "io_uring": ["--ioengine=io_uring"],
           "io_uring, SQPOLL": ["--ioengine=io_uring", "--sqthread_poll=1"]}


def check() -> None:
    """Raise Unavailable unless fio is installed."""
    if shutil.which("fio") is None:
        raise Unavailable("fio is not installed: run `make setup` (Debian/Ubuntu package fio)")


def argv(path: str, engine: str, qd: int, seconds: float) -> list[str]:
    """The fio command line (randrepeat=0, norandommap: random offsets like the Python workers')."""
    return ["fio", "--name=bench", f"--filename={path}", "--direct=1", "--rw=randread", "--bs=4k",
            f"--iodepth={qd}", *ENGINES[engine], f"--runtime={round(seconds * 900)}ms", "--time_based",
            f"--ramp_time={round(seconds * 100)}ms", "--randrepeat=0", "--norandommap",
            "--lat_percentiles=1", "--output-format=json"]


def parse(text: str) -> dict[str, Any]:
    """IOPS, CPU % (user + system, of one core) and the p50/p99 latency (µs, from submission to
    completion: lat; with SQPOLL fio cannot time clat, which it then reports as ~1 s) of fio's
    JSON output."""
    start = text.find("{")   # fio may print notes before the JSON
    if start < 0:
        raise ValueError(f"no JSON in fio's output: {text.strip()[-300:]!r}")
    job = json.loads(text[start:])["jobs"][0]
    if job.get("error"):
        raise ValueError(f"fio's job failed with error {job['error']}")
    read = job["read"]
    percentiles = read.get("lat_ns", {}).get("percentile") or read["clat_ns"].get("percentile", {})
    cpu = job.get("usr_cpu", 0.0) + job.get("sys_cpu", 0.0)   # % of one core, like the workers' cpu_pct
    return {"iops": round(float(read["iops"]), 1), "ops": int(read["total_ios"]),
            "cpu_pct": round(float(cpu), 1) if cpu else None,
            "seconds": round(read["runtime"] / 1e3, 3),
            "p50_us": round(percentiles["50.000000"] / 1e3, 1) if "50.000000" in percentiles else None,
            "p99_us": round(percentiles["99.000000"] / 1e3, 1) if "99.000000" in percentiles else None}


def run(path: str, engine: str, qd: int, seconds: float) -> dict[str, Any]:
    """One fio run; a result shaped like bench.worker's (no threads, no loop: None)."""
    result: dict[str, Any] = {"api": f"fio ({engine})", "qd": qd, "mode": "O_DIRECT", "ops": 0, "seconds": None,
                              "iops": None, "p50_us": None, "p99_us": None, "stall_ms": None,
                              "unavailable": None, "error": None}
    try:
        check()
    except Unavailable as err:
        result["unavailable"] = str(err)
        return result
    done = subprocess.run(argv(path, engine, qd, seconds), capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        result["error"] = f"fio exited {done.returncode}: {done.stderr.strip()[-300:]}"
        return result
    try:
        result.update(parse(done.stdout))
    except (ValueError, KeyError) as err:
        result["error"] = f"cannot read fio's output: {err}"
    return result
