"""The bench's "nothing lost" target: kernaio's tests of what must never be lost, run now, and the ASan run's record.

Speed that loses a request is no speed. So `make bench` runs, in the same run as its
measurements, the part of kernaio's own suite (py/kernaio/tests) that is about losing
nothing: cancellation (queued and in flight: a buffer held until the kernel is done), fork,
closing a file and a loop with requests in flight, a thousand loops in a row, uvloop,
KeyboardInterrupt in every call into the loop -- every test on both engines and on both
backends (io_uring with and without SQPOLL). What it leaves out is slow and covered by `make
test`: KeyboardInterrupt at every line of the Python engine, 2,500 loops never closed, the
strace checks.

The million reads under AddressSanitizer take minutes, longer than the whole bench: `make
asan` records its outcome with a fingerprint of kernaio's sources (`tools/kernaio-asan.sh`
calls sources_hash), and the target counts it only if it is this tree's.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from typing import Any

from measuring import child_env
from paths import ROOT

KERNAIO = ROOT / "py" / "kernaio"
LEFT_OUT = "not anywhere_in_the_engine and not never_closed and not strace and not used_up"
LEAK_READS = 20_000   # the leak test's reads here (make test: 100,000; make asan: a million)
ASAN_READS = 1_000_000
ASAN_STATUS = ROOT / "build" / "asan" / f"kernaio-status-{ASAN_READS}.json"   # tools/kernaio-asan.sh writes it


def sources_hash() -> str:
    """A fingerprint of kernaio's sources (C and Python): which tree a recorded ASan run was."""
    digest = hashlib.sha256()
    for path in sorted(KERNAIO.glob("src/*")) + sorted(KERNAIO.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def asan_record() -> dict[str, Any]:
    """What the last `make asan` recorded: {"ok": bool | None, "said": str}."""
    try:
        status = json.loads(ASAN_STATUS.read_text())
    except (OSError, ValueError):
        return {"ok": None, "said": "ASan not run on this tree (make asan)"}
    if status.get("sources") != sources_hash():
        return {"ok": None, "said": "ASan last run on other sources (make asan again)"}
    reads = int(status.get("reads", 0))
    if status.get("exit") != 0:
        return {"ok": False, "said": f"ASan run FAILED ({reads:,} reads; make asan)"}
    if reads < ASAN_READS:
        return {"ok": None, "said": f"ASan clean, but with {reads:,} reads (make asan: {ASAN_READS:,})"}
    return {"ok": True, "said": f"ASan: {reads:,} reads clean (make asan, this tree)"}


def check(timeout: float = 600) -> dict[str, Any]:
    """Run the tests; {"ok": bool | None, "measured": str, "tests": {...}, "asan": {...}}."""
    env = dict(child_env(), KERNAIO_LEAK_READS=str(LEAK_READS))
    env.pop("KERNAIO_ENGINE", None)   # the suite chooses each engine itself
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pytest.ini"), "-q",
                               "-p", "no:cacheprovider", str(KERNAIO / "tests"), "-k", LEFT_OUT],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        last = (done.stdout.strip().splitlines() or [""])[-1]
        code = done.returncode
    except subprocess.TimeoutExpired:
        last, code = f"did not finish in {timeout:g} s", -1
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", last)}
    passed = counts.get("passed", 0)
    tests_ok = code == 0 and passed > 0
    asan = asan_record()
    ok = False if not tests_ok or asan["ok"] is False else asan["ok"]
    said = (f"{passed} tests passed" if tests_ok else f"tests FAILED: {last.strip('= ')}")
    return {"ok": ok, "measured": f"{said} (both engines; aio, io_uring, SQPOLL); {asan['said']}",
            "tests": {"exit": code, "summary": last.strip("= "), **counts}, "asan": asan}
