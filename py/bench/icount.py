"""Instructions per read, counted by callgrind: the repeatable figure on a noisy machine.

    python -m bench.icount [--api NAME ...] [--qd N ...] [--reads N]

Timings on a shared 2-core VM wander by tens of percent from one run to the next; the
number of instructions a read costs in user space does not. Each API of the bench reads
--reads random 4 KiB blocks at each QD under `valgrind --tool=callgrind`, and again twice
as many: the difference, divided by --reads, is the cost of one read with the start-up
(the interpreter, the imports, opening the file) taken out. The kernel's instructions are
not counted (valgrind sees user space only), nor is the time the device takes: under
valgrind the program runs about 50 times slower, so every completion is already there
when it is reaped. That makes the figure what it is meant to be: the CPU work of the
library and its event loop for one read, the same every run.

The child (`--child API QD FILE READS`) is bench.worker without the clock and the
heartbeat: QD coroutines, each reading its share at seeded random offsets.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.apis import APIS, BLOCK
from bench.run import Config
from measuring import child_env

DEFAULT_APIS = ("kernaio", "kernaio (Python engine)")


async def _reads(name: str, qd: int, path: str, count: int) -> None:
    blocks = os.path.getsize(path) // BLOCK
    picks = [random.Random(k) for k in range(qd)]
    async with APIS[name].open(path, qd) as readers:
        async def worker(read: object, pick: random.Random, n: int) -> None:
            for _ in range(n):
                if await read(pick.randrange(blocks) * BLOCK) != BLOCK:  # type: ignore[operator]
                    raise RuntimeError("short read")
        share = [count // qd + (k < count % qd) for k in range(qd)]
        await asyncio.gather(*(worker(r, p, n) for r, p, n in zip(readers, picks, share)))


def child(name: str, qd: int, path: str, count: int) -> None:
    entry = APIS[name]
    os.environ.update(entry.env)
    for needed in entry.needs:
        importlib.import_module(needed)
    loop = importlib.import_module("uvloop").new_event_loop() if entry.loop == "uvloop" \
        else asyncio.new_event_loop()
    try:
        loop.run_until_complete(_reads(name, qd, path, count))
    finally:
        loop.close()


def instructions(name: str, qd: int, path: Path, count: int) -> int:
    """User-space instructions of one child run (callgrind's total)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                sys.executable, "-m", "bench.icount", "--child", name, str(qd), str(path), str(count)]
        done = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"{name} QD {qd}: {done.stderr.strip()[-500:]}")
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"{name} QD {qd}: no total in callgrind's output")


def per_read(name: str, qd: int, path: Path, count: int) -> float:
    return (instructions(name, qd, path, 2 * count) - instructions(name, qd, path, count)) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.icount", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--child", nargs=4, metavar=("API", "QD", "FILE", "READS"), help=argparse.SUPPRESS)
    parser.add_argument("--api", action="append", choices=list(APIS), metavar="NAME")
    parser.add_argument("--qd", type=int, action="append")
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.child:
        name, qd, path, count = args.child
        child(name, int(qd), path, int(count))
        return 0
    path = Config().data_file
    if not path.exists():
        print(f"{path} is missing: run `make bench` once (it makes the file)", file=sys.stderr)
        return 2
    print(f"user-space instructions per 4 KiB read (callgrind, ({2 * args.reads:,} - {args.reads:,}) reads / "
          f"{args.reads:,}):")
    for name in args.api or [a for a in DEFAULT_APIS if a in APIS]:
        for qd in args.qd or [1, 32]:
            print(f"  {name:<28} QD {qd:<3} {per_read(name, qd, path, args.reads):>10,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
