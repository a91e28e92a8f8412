"""The bench's outputs: the table (terminal and bench.txt), bench.json, iops.png; ratios and targets."""
from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.apis import NO_IO
from bench.run import FIO_APIS, Config

KERNAIO = "kernaio"
SQPOLL = "kernaio (io_uring, SQPOLL)"
CEILING = "fio (libaio)"
FIO_SQPOLL = "fio (io_uring, SQPOLL)"
ALONE = "asyncio alone (no I/O)"
CAIO_URING = "aiofile (caio uring)"
TARGET_QD = 32           # the queue depth the CPU and fio targets are judged at
ROUNDS = 3               # those rows at TARGET_QD, back to back: the median of the rounds is judged
ROUNDED = (KERNAIO, SQPOLL, CEILING, FIO_SQPOLL, ALONE)
CPU_FACTOR = 1.15        # kernaio's CPU per read <= this x (fio-libaio's + asyncio alone's)
PEER_SHARE = 0.97        # kernaio's IOPS >= this x every Python peer's, at every QD (3%: the noise)
FIO_SHARE = 0.8          # kernaio >= this share of fio-libaio's IOPS
SQPOLL_FIO_SHARE = 1.0   # kernaio with SQPOLL >= fio-libaio
STALL_MS = 1.0           # the heartbeat may be at most max(this, STALL_FACTOR x an idle loop's worst) late
STALL_FACTOR = 1.5

Result = dict[str, Any]
Round = dict[str, Result | None]


def _iops(results: list[Result], api: str, qd: int) -> float | None:
    for r in results:
        if r["api"] == api and r["qd"] == qd and r.get("iops"):
            return float(r["iops"])
    return None


def is_peer(api: str) -> bool:
    """A Python library kernaio competes with: not kernaio itself, not fio, not the no-I/O reference."""
    return not api.startswith(KERNAIO) and api not in FIO_APIS and api != ALONE


def ratios(results: list[Result], depths: tuple[int, ...]) -> dict[str, dict[str, float | None]]:
    """{peer: {"QD": kernaio IOPS / peer IOPS}} for every other row (None when one is missing)."""
    apis = list(dict.fromkeys(r["api"] for r in results if r["api"] != KERNAIO))
    out: dict[str, dict[str, float | None]] = {}
    for api in apis:
        out[api] = {}
        for qd in depths:
            mine, theirs = _iops(results, KERNAIO, qd), _iops(results, api, qd)
            out[api][str(qd)] = round(mine / theirs, 3) if mine and theirs else None
    return out


def round_values(rounds: list[Round], value: Callable[[Round], float | None]) -> list[float]:
    """value(round) for each round where it could be computed (its rows were all measured)."""
    return [v for v in map(value, rounds) if v is not None]


def _iops_ratio(mine: str, theirs: str) -> Callable[[Round], float | None]:
    def ratio(rnd: Round) -> float | None:
        a, b = rnd.get(mine), rnd.get(theirs)
        return a["iops"] / b["iops"] if a and b and a.get("iops") and b.get("iops") else None
    return ratio


def _cpu_ratio(rnd: Round) -> float | None:
    """kernaio's CPU per read / (fio-libaio's + asyncio alone's), in one round."""
    mine, fio, alone = (_cpu_per_read(rnd[api]) if rnd.get(api) else None  # type: ignore[arg-type]
                        for api in (KERNAIO, CEILING, ALONE))
    return mine / (fio + alone) if mine is not None and fio is not None and alone is not None else None


def _median(values: list[float], what: str) -> tuple[float | None, str]:
    if not values:
        return None, "-"
    median = statistics.median(values)
    return median, f"{what} median {median:.2f} x of {len(values)} rounds ({', '.join(f'{v:.2f}' for v in values)})"


def strongest_peer(results: list[Result], qd: int) -> str | None:
    """The Python peer with the most IOPS at qd in the table: the one kernaio is closest to."""
    peers = [(r["iops"], r["api"]) for r in results if r["qd"] == qd and is_peer(r["api"]) and r.get("iops")]
    return max(peers)[1] if peers else None


def rounded_apis(results: list[Result], qd: int) -> list[str]:
    """The rows measured again, back to back, at qd: at TARGET_QD the CPU and fio targets' rows;
    at every QD kernaio and its strongest peer, SQPOLL and caio's io_uring (the second target's
    closest pairs: a 3% margin is less than one run's noise on a shared machine)."""
    closest = [KERNAIO, strongest_peer(results, qd), SQPOLL, CAIO_URING]
    return list(dict.fromkeys([*(ROUNDED if qd == TARGET_QD else ()), *filter(None, closest)]))


def table_round(results: list[Result], qd: int, apis: tuple[str, ...] | list[str]) -> Round:
    return {api: next((r for r in results if r["api"] == api and r["qd"] == qd and r.get("iops")), None)
            for api in apis}


def targets(results: list[Result], depths: tuple[int, ...], floors: list[float] | None = None,
            rounds: dict[int, list[Round]] | None = None, lost: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The five targets of issue 19, each with what was measured and ok (None: not measured).

    rounds: per QD, rows measured again in adjacent rounds (bench.run.paired_rounds, the first
    round being the table's; rounded_apis says which); without them, the table's own rows are
    the one round. floors: an idle loop's worst lateness, sampled through the run (the
    machine's own floor). lost: bench.lost.check()'s outcome."""
    rounds = dict(rounds or {})
    for qd in depths:
        rounds.setdefault(qd, [table_round(results, qd, [*ROUNDED, *filter(None, [strongest_peer(results, qd)]),
                                                         CAIO_URING])])
    at_target = rounds.get(TARGET_QD) or [table_round(results, TARGET_QD, ROUNDED)]
    checks: list[dict[str, Any]] = []

    def add(target: str, value: float | None, measured: str, ok: bool | None) -> None:
        checks.append({"target": target, "value": value, "measured": measured, "ok": ok})

    # 1. CPU per read
    cpu, said = _median(round_values(at_target, _cpu_ratio), "")
    first = at_target[0]
    if first.get(KERNAIO) and first.get(CEILING) and first.get(ALONE):
        said += "; round 1: kernaio {:.1f}, fio {:.1f} + asyncio {:.1f} µs".format(
            *(_cpu_per_read(first[api]) or 0.0 for api in (KERNAIO, CEILING, ALONE)))  # type: ignore[arg-type]
    add(f"kernaio's CPU per read at QD {TARGET_QD} <= {CPU_FACTOR:g} x (fio-libaio's + asyncio alone's)",
        cpu, said.strip(), None if cpu is None else cpu <= CPU_FACTOR)

    # 2. every Python peer, every QD (the median of the rounds where a pair has them); SQPOLL against caio's io_uring
    def ratio_at(qd: int, mine: str, theirs: str) -> float | None:
        values = round_values(rounds[qd], _iops_ratio(mine, theirs))
        return statistics.median(values) if values else None

    worst: tuple[float, str, int] | None = None
    worst_sq: tuple[float, int] | None = None
    for qd in depths:
        for api in dict.fromkeys(r["api"] for r in results if is_peer(r["api"])):
            ratio = ratio_at(qd, KERNAIO, api) if api in rounds[qd][0] else None
            mine, theirs = _iops(results, KERNAIO, qd), _iops(results, api, qd)
            ratio = ratio if ratio is not None else (mine / theirs if mine and theirs else None)
            if ratio is not None and (worst is None or ratio < worst[0]):
                worst = (ratio, api, qd)
        sq = ratio_at(qd, SQPOLL, CAIO_URING)
        if sq is not None and (worst_sq is None or sq < worst_sq[0]):
            worst_sq = (sq, qd)
    said = "-" if worst is None else f"lowest kernaio / peer {worst[0]:.2f} x ({worst[1]}, QD {worst[2]})"
    said += "" if worst_sq is None else f"; lowest SQPOLL / caio uring {worst_sq[0]:.2f} x (QD {worst_sq[1]})"
    rounds_at = sorted({len(r) for r in rounds.values()})
    said += f"; closest pairs: median of {'/'.join(map(str, rounds_at))} rounds"
    ok = None if worst is None or worst_sq is None else worst[0] >= PEER_SHARE and worst_sq[0] >= 1.0
    add(f"kernaio >= {PEER_SHARE:g} x every Python peer's IOPS at every QD; SQPOLL >= caio uring's",
        None if worst is None else worst[0], said, ok)

    # 3. fio-libaio at TARGET_QD
    fio, said = _median(round_values(at_target, _iops_ratio(KERNAIO, CEILING)), "kernaio / fio")
    sq_fio, said_sq = _median(round_values(at_target, _iops_ratio(SQPOLL, CEILING)), "SQPOLL / fio")
    ceiling, said_ceiling = _median(round_values(at_target, _iops_ratio(FIO_SQPOLL, CEILING)),
                                    "fio's own SQPOLL / fio (the ceiling of a reader with that thread here):")
    ok = None if fio is None or sq_fio is None else fio >= FIO_SHARE and sq_fio >= SQPOLL_FIO_SHARE
    add(f"kernaio >= {FIO_SHARE:g} x fio-libaio IOPS at QD {TARGET_QD}; with SQPOLL >= {SQPOLL_FIO_SHARE:g} x",
        fio, "; ".join(x for x in (said, said_sq, said_ceiling if ceiling is not None else "") if x), ok)

    # 4. loop stalls
    stalls = [(float(r["stall_ms"]), r["qd"]) for r in results if r["api"] == KERNAIO and r.get("iops")
              and r.get("stall_ms") is not None]
    floor = max(floors) if floors else None
    limit = max(STALL_MS, STALL_FACTOR * floor) if floor is not None else STALL_MS
    busy = max((float(r["stall_ms"]) for r in results if r["api"] == ALONE and r.get("stall_ms") is not None),
               default=None)
    top = max(stalls, default=None)
    said = "-" if top is None else f"worst {top[0]:.2f} ms (QD {top[1]}) against {limit:.2f} ms"
    if floor is not None and floors:
        said += f"; an idle loop here: worst {floor:.2f} ms of {len(floors)} samples"
    if busy is not None:
        said += f"; a busy loop with no I/O (asyncio alone): worst {busy:.2f} ms"
    add(f"kernaio's worst loop stall at every QD <= max({STALL_MS:g} ms, {STALL_FACTOR:g} x an idle loop's)",
        None if top is None else top[0], said, None if top is None else top[0] <= limit)

    # 5. nothing lost
    add("nothing lost: cancellation, fork, close in flight, 1,000 loops, ASan's million reads, uvloop; "
        "both engines, both backends", None, lost["measured"] if lost else "- (not run: --quick or --no-lost)",
        lost["ok"] if lost else None)
    return checks


def _cpu_per_read(r: Result) -> float | None:
    """Microseconds of CPU per read (per await for asyncio alone): CPU % over IOPS."""
    cpu, iops = r.get("cpu_pct"), r.get("iops")
    return None if cpu is None or not iops else cpu / 100 / iops * 1e6


def _num(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: list[Result], config: Config, floors: list[float] | None = None,
          rounds: dict[int, list[Round]] | None = None, lost: dict[str, Any] | None = None) -> str:
    """The table as text, grouped by QD, then the ratios and the targets."""
    header = ["QD", "API", "file", "IOPS", "p50 µs", "p99 µs", "threads", "worst stall ms", "CPU %",
              "CPU µs/read", "runq ms", "kernaio / this"]
    cells: list[list[str]] = []
    notes: list[str] = []
    for r in results:
        mine, theirs = _iops(results, KERNAIO, r["qd"]), r.get("iops")
        ratio = "" if r["api"] == KERNAIO or not mine or not theirs else f"{mine / theirs:.2f} x"
        threads = "n/a" if r["api"] in FIO_APIS else _num(r.get("threads"))
        stall = "n/a" if r["api"] in FIO_APIS else _num(r.get("stall_ms"), 2)
        cells.append([str(r["qd"]), r["api"], r.get("mode", "-"), _num(theirs), _num(r.get("p50_us")),
                      _num(r.get("p99_us")), threads, stall, _num(r.get("cpu_pct")), _num(_cpu_per_read(r), 1),
                      _num(r.get("runq_wait_ms")), ratio])
        why = r.get("error") or r.get("unavailable")
        if why:
            notes.append(f"QD {r['qd']} {r['api']}: {why}")
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    left = {1, 2}

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i in left else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = [f"make bench: {config.data_file.name} ({config.file_size >> 20} MiB), random 4 KiB reads, "
           f"{config.seconds:g} s per row, each in a process of its own (Linux {platform.release()}, "
           f"{_cpus()} CPUs).", "", line(header), "  ".join("-" * w for w in widths)]
    previous = None
    for r, values in zip(results, cells):
        if previous is not None and r["qd"] != previous:
            out.append("")
        previous = r["qd"]
        out.append(line(values))
    out += ["", "kernaio's IOPS divided by each row's, per QD:"]
    rat = ratios(results, config.depths)
    width = max([len(a) for a in rat] + [4])
    out.append(f"  {'':<{width}}  " + "  ".join(f"{'QD ' + str(qd):>7}" for qd in config.depths))
    for api, by_qd in rat.items():
        out.append(f"  {api:<{width}}  " + "  ".join(f"{_num(by_qd[str(qd)], 2):>7}" for qd in config.depths))
    out += ["", "Targets (measured, not assumed):"]
    for t in targets(results, config.depths, floors, rounds, lost):
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["ok"]]
        out.append(f"  [{mark:^12}] {t['target']}: {t['measured']}")
    out += ["", "file: O_DIRECT = every read goes to the device. buffered, cache dropped = caio reads into a buffer it",
            "  allocates, which O_DIRECT refuses (EINVAL), so these rows read through the page cache, emptied of the",
            "  file first (posix_fadvise DONTNEED), with readahead off (POSIX_FADV_RANDOM); no block is read twice in",
            "  a row (each block of the file once, shuffled), so their reads are reads of the device too.",
            "threads = threads beside the main one alive during the reads (/proc/PID/task, io_uring's kernel",
            "  workers included); worst stall = how late a coroutine that sleeps 1 ms at a time woke up, at worst",
            "  (an idle loop here = the same heartbeat with nothing else running: the machine's own floor).",
            "CPU % = the process's CPU time over the run (100 = one core; fio: its usr_cpu + sys_cpu); CPU µs/read",
            "  = that CPU time per read: fio's is nearly all the kernel's work for one read, which every row pays too.",
            "  runq ms = how long the loop's thread waited for a CPU while runnable: a stall the machine caused",
            "  (other programs), not the API.",
            "fio = the same reads from C (one job, --direct=1): the ceiling. Latencies: fio's own (lat: from submission).",
            "  fio (io_uring, SQPOLL) = fio's io_uring reader with its kernel thread (--sqthread_poll=1).",
            "kernaio = the C engine (the default); kernaio (Python engine) = the same reads on the Python one (lab 6's).",
            "kernaio (io_uring, SQPOLL) = a kernel thread of the process (iou-sqp) submits: its CPU is in CPU %, its",
            "  thread in threads. Targets between two rows are judged on the median of rounds of them run back to back",
            "  (at QD 32 the CPU and fio targets' rows; at every QD kernaio and its strongest peer, SQPOLL and caio uring).",
            "kernaio (uvloop) = kernaio's reads on uvloop's event loop instead of asyncio's. asyncio alone (no I/O) =",
            "  the same coroutines awaiting futures that one callback per loop iteration resolves: asyncio's own",
            "  cost, the most any asyncio file library can reach on this CPU. When kernaio is near it, what is",
            "  left between kernaio and fio is the event loop's, not kernaio's."]
    if notes:
        out += ["", "Rows that did not run:", *[f"  {n}" for n in notes]]
    return "\n".join(out) + "\n"


def _cpus() -> int:
    import os
    return os.cpu_count() or 1


def write_json(results: list[Result], config: Config, seconds: float, path: Path,
               floors: list[float] | None = None, rounds: dict[int, list[Round]] | None = None,
               lost: dict[str, Any] | None = None) -> None:
    doc = {"config": {"file": config.data_file.name, "file_size": config.file_size, "block_size": 4096,
                      "seconds_per_row": config.seconds, "depths": list(config.depths)},
           "machine": {"kernel": platform.release(), "cpus": _cpus()},
           "runtime_s": round(seconds, 1),
           "rows": results, "ratios": ratios(results, config.depths),
           "targets": targets(results, config.depths, floors, rounds, lost),
           "target_rounds": {str(qd): r for qd, r in (rounds or {}).items()}, "idle_loop_stall_ms": max(floors) if floors else None,
           "idle_loop_stall_samples_ms": floors or [], "nothing_lost": lost}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def draw(results: list[Result], config: Config, path: Path) -> None:
    """iops.png: IOPS against queue depth, a line per API, fio dashed (the ceiling). The no-I/O
    reference row is left out: its scale (several times fio's) would flatten every line."""
    import matplotlib
    matplotlib.use("Agg")   # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    peer_colors = iter(["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"] * 2)
    for api in dict.fromkeys(r["api"] for r in results):
        points = [(r["qd"], r["iops"]) for r in results
                  if r["api"] == api and r.get("iops") and r.get("mode") != NO_IO]
        if not points:
            continue
        xs, ys = zip(*points)
        style: dict[str, Any] = {"linestyle": "--", "color": "#555555" if "libaio" in api else "#999999"}
        if api not in FIO_APIS:
            style = ({"linewidth": 3.0, "color": "#d62728"} if api == KERNAIO   # red: no peer is red
                     else {"linewidth": 1.3, "color": next(peer_colors)})
        ax.plot(xs, ys, marker="o", label=api, **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(config.depths), [str(qd) for qd in config.depths])
    ax.set_xlabel("queue depth (reads in flight)")
    ax.set_ylabel("IOPS (4 KiB random reads)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"kernaio against its peers; fio (dashed) is the ceiling — Linux {platform.release()}",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
