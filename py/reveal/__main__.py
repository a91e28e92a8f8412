"""`make reveal`: python -m reveal [--api NAME ...] [--repeat N] [--out DIR]."""
from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

from measuring import cannot_write, write_all
from paths import ROOT
from reveal import report
from reveal.probes import PROBES
from reveal.run import Config, Workload, run_all


def workload(text: str) -> Workload:
    """'16Kx256' -> 256 reads of 16 KiB; '4Mx16' -> 16 reads of 4 MiB."""
    size, _, count = text.lower().partition("x")
    units = {"k": 1 << 10, "m": 1 << 20}
    try:
        block = int(size[:-1]) * units[size[-1]] if size[-1:] in units else int(size)
        return Workload(block, int(count))
    except (ValueError, KeyError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r}: write SIZExCOUNT, e.g. 16Kx256 or 4Mx16") from None


def main(argv: list[str] | None = None) -> int:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m reveal", description="Run every async file API plain, under "
                                     "strace and under perf: its threads, its waits for the device, one table.")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "reveal", help="where the outputs go")
    parser.add_argument("--api", action="append", choices=list(PROBES), metavar="NAME",
                        help="only this API, named as in the table's first column (repeatable)")
    parser.add_argument("--reads", action="append", type=workload, metavar="SIZExCOUNT",
                        help="a size of read and how many per pass (repeatable; default: 16Kx256 and 4Mx16)")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="reads in flight")
    parser.add_argument("--passes", type=int, default=defaults.passes, help="passes under perf per row")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run it all N times and print each row's verdicts side by side (make reveal REPEAT=N)")
    parser.add_argument("--no-png", action="store_true", help="skip the pictures")
    args = parser.parse_args(argv)
    problem = cannot_write(args.out, "reveal")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    config = Config(workloads=tuple(args.reads or defaults.workloads), concurrency=args.concurrency,
                    passes=args.passes, apis=tuple(args.api or ()))
    began = time.monotonic()
    runs = []
    for n in range(args.repeat):
        if args.repeat > 1:
            print(f"--- run {n + 1} of {args.repeat}", flush=True)
        print(f"make reveal: {len(config.apis) or len(PROBES)} APIs x buffered and O_DIRECT x "
              f"{len(config.workloads)} size(s) of read; each row runs plain, under strace, then "
              f"{config.passes} times under perf where perf can run", flush=True)
        rows, tools = run_all(config, progress=lambda line: print(line, flush=True))
        runs.append(rows)
    # The table, the JSON and the pictures all come from the last run.
    outputs: dict[str, Callable[[Path], None]] = {"reveal.json": lambda path: report.write_json(rows, path)}
    if not args.no_png:
        for w in config.workloads:
            mine = [r for r in rows if r.read_size == w.read_size and r.reads == w.reads]
            outputs[report.picture_name(w)] = functools.partial(report.draw, mine)
    agreed = True
    if len(runs) > 1:
        text, agreed = report.agreement(runs)
        outputs["agreement.txt"] = lambda path: report.write_text(path, text)
    write_all(args.out, "reveal.txt", report.table(rows, config, tools), outputs,
                     time.monotonic() - began, ROOT)
    if len(runs) > 1:
        print("\nThe verdicts of the runs, side by side (agreement.txt):\n\n" + text)
    return 0 if agreed else 1


if __name__ == "__main__":
    sys.exit(main())
