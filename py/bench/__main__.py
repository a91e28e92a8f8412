"""`make bench`: python -m bench [--only files|echo] [--quick] [--out DIR] [file options] [echo options]."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import echo, echo_report, lost, report
from bench.run import Config, Round, all_apis, idle_floor, paired_rounds, run_all
from measuring import cannot_write, write_all
from paths import ROOT

QUICK = Config(file_size=64 << 20, seconds=0.4, depths=(1, 8))   # the test's run: seconds, not minutes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="kernaio against every peer: "
                                     "4 KiB random reads at several queue depths, one table; then the echo "
                                     "servers (the lab-2 reactor against asyncio, uvloop, ...), another table.")
    parser.add_argument("--only", choices=("files", "echo"), help="run only the file or only the echo benchmark")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench", help="where the outputs go")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: a 64 MiB file, QD 1 and 8, 0.4 s per row; two small echo scenarios")
    parser.add_argument("--seconds", type=float, help="seconds per measurement")
    parser.add_argument("--qd", type=int, action="append", help="queue depth (repeatable)")
    parser.add_argument("--api", action="append", choices=all_apis(), metavar="NAME",
                        help="only this API, named as in the table (repeatable; kernaio is always run)")
    parser.add_argument("--no-png", action="store_true", help="skip the pictures")
    parser.add_argument("--no-lost", action="store_true",
                        help="skip the 'nothing lost' target's tests (kernaio's own, about 30 s)")
    parser.add_argument("--echo-server", action="append", choices=list(echo.SERVERS), metavar="NAME",
                        help="echo: only this server (repeatable; asyncio, the baseline, is always run)")
    parser.add_argument("--no-pin", action="store_true",
                        help="echo: do not pin the load generator and the server to a CPU each")
    args = parser.parse_args(argv)
    problem = cannot_write(args.out, "bench")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.only != "echo":
        files(args)
    if args.only != "files":
        if args.only is None:
            print(flush=True)
        echo_bench(args)
    return 0


def files(args: argparse.Namespace) -> None:
    """The file benchmark: kernaio against the peers and fio (bench.txt, bench.json, iops.png)."""
    base = QUICK if args.quick else Config()
    apis = tuple(dict.fromkeys(["kernaio", *args.api])) if args.api else ()
    config = Config(file_size=base.file_size, seconds=args.seconds or base.seconds,
                    depths=tuple(args.qd or base.depths), apis=apis)
    began = time.monotonic()
    print(f"make bench: {len(config.selected())} APIs x QD {', '.join(map(str, config.depths))}, "
          f"{config.seconds:g} s each", flush=True)
    floors: list[float] = []
    results = run_all(config, progress=lambda line: print(line, flush=True), floors=floors)
    rounds: dict[int, list[Round]] = {}
    if not args.quick:
        for qd in config.depths:
            again = [api for api in report.rounded_apis(results, qd) if api in config.selected()]
            rounds[qd] = paired_rounds(results, again, qd, config, report.ROUNDS,
                                       progress=lambda line: print(line, flush=True))
    floors.append(round(idle_floor(min(config.seconds, 3.0)), 3))
    print(f"an idle loop's heartbeat here: worst {max(floors):.2f} ms late of {len(floors)} samples "
          "(the machine's own floor)", flush=True)
    found = None
    if not args.quick and not args.no_lost:
        print("nothing lost? kernaio's cancellation, fork, close, loops and uvloop tests, both engines and "
              "backends ...", flush=True)
        found = lost.check()
        print(f"  {found['measured']}", flush=True)
    text = report.table(results, config, floors, rounds, found)
    elapsed = time.monotonic() - began
    outputs: dict[str, Callable[[Path], None]] = {
        "bench.json": lambda path: report.write_json(results, config, elapsed, path, floors, rounds, found)}
    if not args.no_png:
        outputs["iops.png"] = lambda path: report.draw(results, config, path)
    write_all(args.out, "bench.txt", text, outputs, elapsed, ROOT)


def echo_bench(args: argparse.Namespace) -> None:
    """The echo benchmark: five servers under one load generator (echo.txt, echo.json, echo.png)."""
    base = echo.QUICK if args.quick else echo.Config()
    servers = tuple(dict.fromkeys([echo.BASELINE, *args.echo_server])) if args.echo_server else ()
    config = echo.Config(scenarios=base.scenarios, repeats=base.repeats, servers=servers, pin=not args.no_pin)
    began = time.monotonic()
    print(f"make bench (echo): {len(config.selected())} servers x {len(config.scenarios)} scenarios, "
          f"the same load for each, best of {config.repeats}", flush=True)
    rows = echo.run_all(config, progress=lambda line: print(line, flush=True))
    elapsed = time.monotonic() - began
    outputs: dict[str, Callable[[Path], None]] = {
        "echo.json": lambda path: echo_report.write_json(rows, config, elapsed, path)}
    if not args.no_png:
        outputs["echo.png"] = lambda path: echo_report.draw(rows, path)
    write_all(args.out, "echo.txt", echo_report.table(rows, config), outputs, elapsed, ROOT)


if __name__ == "__main__":
    sys.exit(main())
