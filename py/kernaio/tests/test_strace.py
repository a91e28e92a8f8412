"""What the kernel sees: kernaio reads with no thread, and io_submit carries several iocbs per call."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from paths import ROOT
from xray import Unavailable, strace

SCRIPT = """
import asyncio, sys, kernaio
async def main():
    async with kernaio.open(sys.argv[1], "rb") as f:
        for round in range(3):
            parts = await asyncio.gather(*(f.read(4096, offset=i * 4096) for i in range(32)))
            assert all(len(p) == 4096 for p in parts)
asyncio.run(main())
print("ok")
"""


def test_no_thread_and_batched_io_submit(data: tuple[Path, bytes]) -> None:
    path, _ = data
    env = dict(os.environ, PYTHONPATH=str(ROOT / "py"))
    try:
        tr = strace.run([sys.executable, "-c", SCRIPT, str(path)], env=env, trace="io_submit,io_getevents")
    except Unavailable as why:
        pytest.skip(str(why))
    assert tr.returncode == 0 and "ok" in tr.stdout, tr.stderr[-2000:]
    assert not tr.threads_created, f"kernaio started {len(tr.threads_created)} thread(s): it must use none"
    submits = tr.named("io_submit")
    assert submits, "no io_submit seen: is kernaio using kernel AIO at all?"
    sizes = [int(c.args.split(",")[1]) for c in submits]
    assert max(sizes) >= 32, f"io_submit sizes {sizes}: 32 reads made together should go in one call"
    assert len(submits) <= 6, f"{len(submits)} io_submit calls for 3 rounds of 32 reads: they are not batched"
