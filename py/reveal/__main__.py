"""`make reveal`: python -m reveal [--blocks N] [--api NAME ...] [--out DIR]."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from reveal import report
from reveal.probes import PROBES
from reveal.run import ROOT, Config, run_all


def main(argv: list[str] | None = None) -> int:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m reveal", description="Run every async file API under "
                                     "strace and /proc: its threads, its loop stalls, one table.")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "reveal", help="where the outputs go")
    parser.add_argument("--api", action="append", choices=list(PROBES), metavar="NAME",
                        help="only this API, named as in the table's first column (repeatable)")
    parser.add_argument("--blocks", type=int, default=defaults.blocks, help="reads per run")
    parser.add_argument("--block-size", type=int, default=defaults.block_size, help="bytes per read")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="reads in flight")
    parser.add_argument("--stall-ms", type=float, default=defaults.stall_ms, help="a loop-thread I/O call this long (ms) is a stall")
    parser.add_argument("--no-png", action="store_true", help="skip the picture")
    args = parser.parse_args(argv)
    problem = report.cannot_write(args.out, "reveal")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    config = Config(block_size=args.block_size, blocks=args.blocks, concurrency=args.concurrency,
                    stall_ms=args.stall_ms, apis=tuple(args.api or ()))
    began = time.monotonic()
    print(f"make reveal: {len(config.apis) or len(PROBES)} APIs x buffered and O_DIRECT, each run "
          f"{config.traced_runs + 1} times (plain with a heartbeat, then under strace)", flush=True)
    rows = run_all(config, progress=lambda line: print(line, flush=True))
    outputs = {"reveal.json": lambda path: report.write_json(rows, path)}
    if not args.no_png:
        outputs["threads.png"] = lambda path: report.draw(rows, path)
    report.write_all(args.out, "reveal.txt", report.table(rows, config), outputs,
                     time.monotonic() - began, ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
