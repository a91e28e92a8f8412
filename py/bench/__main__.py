"""`make bench`: python -m bench [--quick] [--seconds S] [--qd N ...] [--api NAME ...] [--out DIR]."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import report
from bench.run import ROOT, Config, all_apis, run_all

QUICK = Config(file_size=64 << 20, seconds=0.4, depths=(1, 8))   # the test's run: seconds, not minutes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="kernaio against every peer: "
                                     "4 KiB random reads at several queue depths, one table.")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench", help="where the outputs go")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: a 64 MiB file, QD 1 and 8, 0.4 s per row")
    parser.add_argument("--seconds", type=float, help="seconds per measurement")
    parser.add_argument("--qd", type=int, action="append", help="queue depth (repeatable)")
    parser.add_argument("--api", action="append", choices=all_apis(), metavar="NAME",
                        help="only this API, named as in the table (repeatable; kernaio is always run)")
    parser.add_argument("--no-png", action="store_true", help="skip the picture")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else Config()
    apis = tuple(dict.fromkeys(["kernaio", *args.api])) if args.api else ()
    config = Config(file_size=base.file_size, seconds=args.seconds or base.seconds,
                    depths=tuple(args.qd or base.depths), apis=apis)
    began = time.monotonic()
    print(f"make bench: {len(config.selected())} APIs x QD {', '.join(map(str, config.depths))}, "
          f"{config.seconds:g} s each", flush=True)
    results = run_all(config, progress=lambda line: print(line, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    text = report.table(results, config)
    (args.out / "bench.txt").write_text(text)
    elapsed = time.monotonic() - began
    report.write_json(results, config, elapsed, args.out / "bench.json")
    written = ["bench.txt", "bench.json"]
    if not args.no_png:
        report.draw(results, config, args.out / "iops.png")
        written.append("iops.png")
    print("\n" + text)
    print(f"Written to {_short(args.out)}/: {', '.join(written)} ({elapsed:.0f} s)")
    return 0


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
