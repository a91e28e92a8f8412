"""The bench's outputs: the table (terminal and bench.txt), bench.json, iops.png; ratios and targets."""
from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path
from typing import Any

from bench.apis import NO_IO
from bench.run import FIO_APIS, Config

KERNAIO = "kernaio"
CEILING = "fio (libaio)"
TARGET_QD = 32           # the queue depth the IOPS targets are judged at
ROUNDS = 3               # kernaio and fio-libaio at TARGET_QD: adjacent pairs, the median ratio judged
FIO_SHARE = 0.8          # kernaio >= this share of fio-libaio's IOPS
PEER_FACTOR = 3.0        # kernaio >= this many times to_thread and aiofiles
PEERS_TO_BEAT = ("asyncio.to_thread(os.preadv)", "aiofiles")
STALL_MS = 1.0           # the heartbeat may be at most this late

Result = dict[str, Any]


def _iops(results: list[Result], api: str, qd: int) -> float | None:
    for r in results:
        if r["api"] == api and r["qd"] == qd and r.get("iops"):
            return float(r["iops"])
    return None


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


def round_ratios(rounds: list[dict[str, float | None]]) -> list[float]:
    """kernaio / fio-libaio of each round where both were measured."""
    out = []
    for pair in rounds:
        mine, theirs = pair.get(KERNAIO), pair.get(CEILING)
        if mine and theirs:
            out.append(mine / theirs)
    return out


def targets(results: list[Result], depths: tuple[int, ...], floor_ms: float | None = None,
            rounds: list[dict[str, float | None]] | None = None) -> list[dict[str, Any]]:
    """The targets kernaio is held to, each with what was measured and ok (None: not measured).

    rounds: kernaio's and fio-libaio's IOPS at TARGET_QD in adjacent pairs (bench.run.
    paired_rounds); when there are several, the fio target is judged on their median ratio.

    floor_ms: the worst stall of an event loop that does nothing but the heartbeat, on this
    machine, in the same run: shown beside kernaio's worst stall, because where the floor is
    already near the target (timer slack, a hypervisor taking the CPU), a miss may be the
    machine's rather than the API's."""
    rat = ratios(results, depths)
    checks: list[dict[str, Any]] = []

    def share(peer: str, at_least: float, value: float | None, measured: str = "") -> None:
        checks.append({"target": f"kernaio >= {at_least:g} x {peer} IOPS at QD {TARGET_QD}",
                       "measured": measured or ("-" if value is None else f"{value:.2f} x"),
                       "ok": None if value is None else value >= at_least})

    paired = round_ratios(rounds or [])
    if len(paired) > 1:
        median = statistics.median(paired)
        share(CEILING, FIO_SHARE, median, f"median {median:.2f} x of {len(paired)} paired rounds "
                                          f"({', '.join(f'{r:.2f}' for r in paired)})")
    else:
        share(CEILING, FIO_SHARE, rat.get(CEILING, {}).get(str(TARGET_QD)))
    for peer in PEERS_TO_BEAT:
        share(peer, PEER_FACTOR, rat.get(peer, {}).get(str(TARGET_QD)))
    mine = [r for r in results if r["api"] == KERNAIO and r.get("iops")]
    threads = [r["threads"] for r in mine if r.get("threads") is not None]
    checks.append({"target": "kernaio: zero threads beside the loop's, at every QD",
                   "measured": "-" if not threads else f"max {max(threads)}",
                   "ok": None if not threads else max(threads) == 0})
    stalls = [(float(r["stall_ms"]), r["qd"]) for r in mine if r.get("stall_ms") is not None]
    worst = max(stalls, default=None)
    measured = "-" if worst is None else f"worst {worst[0]:.2f} ms (QD {worst[1]})"
    ok = None if worst is None else worst[0] <= STALL_MS
    if floor_ms is not None:
        measured += f"; an idle loop here: {floor_ms:.2f} ms"
    checks.append({"target": f"kernaio: no loop stall over {STALL_MS:g} ms, at every QD", "measured": measured,
                   "ok": ok})
    return checks


def _cpu_per_read(r: Result) -> float | None:
    """Microseconds of CPU per read (per await for asyncio alone): CPU % over IOPS."""
    cpu, iops = r.get("cpu_pct"), r.get("iops")
    return None if cpu is None or not iops else cpu / 100 / iops * 1e6


def _num(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: list[Result], config: Config, floor_ms: float | None = None,
          rounds: list[dict[str, float | None]] | None = None) -> str:
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
    for t in targets(results, config.depths, floor_ms, rounds):
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["ok"]]
        out.append(f"  [{mark:^12}] {t['target']}: {t['measured']}")
    out += ["", "file: O_DIRECT = every read goes to the device. buffered, cache dropped = caio reads into a buffer it",
            "  allocates, which O_DIRECT refuses (EINVAL), so these rows read through the page cache, emptied of the",
            "  file first (posix_fadvise DONTNEED); blocks read twice during the run come from memory.",
            "threads = threads beside the main one alive during the reads (/proc/PID/task, io_uring's kernel",
            "  workers included); worst stall = how late a coroutine that sleeps 1 ms at a time woke up, at worst",
            "  (an idle loop here = the same heartbeat with nothing else running: the machine's own floor).",
            "CPU % = the process's CPU time over the run (100 = one core; fio: its usr_cpu + sys_cpu); CPU µs/read",
            "  = that CPU time per read: fio's is nearly all the kernel's work for one read, which every row pays too.",
            "  runq ms = how long the loop's thread waited for a CPU while runnable: a stall the machine caused",
            "  (other programs), not the API.",
            "fio = the same reads from C (one job, --direct=1): the ceiling. Latencies: fio's clat percentiles.",
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
               floor_ms: float | None = None, rounds: list[dict[str, float | None]] | None = None) -> None:
    doc = {"config": {"file": config.data_file.name, "file_size": config.file_size, "block_size": 4096,
                      "seconds_per_row": config.seconds, "depths": list(config.depths)},
           "machine": {"kernel": platform.release(), "cpus": _cpus()},
           "runtime_s": round(seconds, 1),
           "rows": results, "ratios": ratios(results, config.depths),
           "targets": targets(results, config.depths, floor_ms, rounds),
           "target_rounds": rounds or [], "idle_loop_stall_ms": floor_ms}
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
