"""The reveal's outputs: the tables (terminal and reveal.txt), reveal.json, a picture per size of read,
and, for `make reveal REPEAT=N`, the verdicts of the N runs side by side (agreement.txt)."""
from __future__ import annotations

import json
import platform
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reveal.analyze import STRACE_STALL_MS, Lane, Row, ms, size_label
from reveal.run import Config, Tools, Workload
from xray.causes import memory_filesystem

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def legend(config: Config) -> str:
    """The rules, a sentence each: how a verdict is reached, what each column measures."""
    half = config.passes // 2 + 1
    return f"""\
How a verdict is reached (the first rule that applies):
  threads      = strace -f saw a read of the file on a thread other than the event loop's.
  blocks-loop  = the loop thread slept in D state, waiting for the device, inside a read, io_submit or
                 io_uring_enter during the reads, in at least {half} of the {config.passes} passes (perf: the scheduler's
                 sched_switch, which stops no thread).
  kernel-async = the bytes moved through io_submit/io_getevents or io_uring and the loop never waited for the
                 device: it only submitted and collected, and the kernel did the reads.
  blocks-loop  = plain reads ran on the loop thread itself: they wait for the disk whenever the pages are not cached.
  unavailable  = it cannot run here, or not this way: the "why" line says why.
What the columns measure:
  device wait  = the loop thread's D-state sleeps inside I/O calls during the reads: in all, the longest one, and
                 in how many passes it waited at all (figures of the middle pass).
  submit cost  = the rest of the loop thread's time inside those calls: CPU work (copying out of the page cache,
                 pinning an O_DIRECT buffer's pages) and preemption on a busy machine. The loop ran nothing else
                 meanwhile, so it is shown; it is not a wait for the device, and no verdict depends on it.
  user thr     = threads the process created (clone/clone3, strace -f); kernel thr = io_uring's iou-wrk/iou-sqp
                 threads that ran for it during the reads (perf, or /proc/PID/task).
  heartbeat    = how late a coroutine that sleeps 1 ms at a time woke up at worst, in a run with no tracer at all."""


def degraded(tools: Tools) -> list[str]:
    """The header's sentences on what could not be measured here, and what that changes."""
    notes = []
    if tools.strace:
        notes.append(f"strace cannot run here ({tools.strace}): no syscalls are seen, so there is no verdict; only "
                     "the heartbeat and the threads seen in /proc are measured.")
    if tools.perf:
        notes.append(f"perf cannot run here ({tools.perf}): the device wait and submit cost columns are empty, and "
                     f"blocks-loop means a loop-thread I/O call of {STRACE_STALL_MS:g} ms or more under strace, whose "
                     "own delay is part of it: those verdicts may differ from one run to the next.")
    return notes


def _calls(row: Row) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(row.io_syscalls.items(), key=lambda kv: -kv[1])) or "-"


def _where(row: Row) -> str:
    others = f"{row.io_threads} other" if row.io_threads else ""
    return {"loop": "loop", "other": others, "loop+other": f"loop + {others}", "kernel": "kernel"}.get(
        row.io_thread or "", "-")


def _wait(row: Row) -> str:
    if row.device_wait_ms is None or row.waited_passes is None:
        return "-"
    if not row.waited_passes:
        return f"0 (0/{row.passes})"
    return f"{ms(row.device_wait_ms)} ms, max {ms(row.device_wait_longest_ms or 0)} ({row.waited_passes}/{row.passes})"


def _submit(row: Row) -> str:
    if row.submit_ms is None:
        return "-"
    return f"{ms(row.submit_ms)} ms, max {ms(row.submit_longest_ms or 0)}"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _one_table(rows: list[Row]) -> list[str]:
    header = ["API", "file", "user thr", "kernel thr", "bytes moved by", "on thread", "device wait (loop)",
              "submit cost (loop)", "heartbeat", "verdict"]
    cells = [[r.api, r.file_mode, _count(r.user_threads), _count(r.kernel_threads), _calls(r), _where(r), _wait(r),
              _submit(r), "-" if r.heartbeat_late_ms is None else f"{ms(r.heartbeat_late_ms)} ms", r.verdict]
             for r in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    right = {2, 3, 8}   # numbers

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(padded).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for row, values in zip(rows, cells):
        out += [line(values), f"    why: {row.reason}"]
    return out


WHY_THIS_SIZE = {"small": "what applications read, 4-64 KiB: the headline",
                 "large": "each call's cost big enough to see"}


def workload_title(workload: Workload, config: Config) -> str:
    kind = "small" if workload.read_size < 1 << 20 else "large"
    return (f"{kind.capitalize()} reads: {workload.reads} reads of {size_label(workload.read_size)} per pass, "
            f"{config.concurrency} at a time ({WHY_THIS_SIZE[kind]})")


def table(rows: list[Row], config: Config, tools: Tools) -> str:
    """The tables as text, one per size of read: a line per row, and its reason on the line below."""
    memory = memory_filesystem(config.data_file.parent)
    source = (f"from {memory}, in memory: no device is read here, so no row waits for a disk and the O_DIRECT rows "
              "are not measured (set LAB_DATA_DIR to a directory on a disk)" if memory else "from a cold page cache")
    timed = ("" if tools.perf else f", and {config.passes} times under perf (did the loop thread wait for the "
             "device?)")
    title = textwrap.fill(
        f"make reveal: the \"async\" file APIs of this machine (Linux {platform.release()}). Each one reads blocks "
        f"of {config.data_file.name} in a shuffled order, {source}: once with no tracer (the heartbeat), once under "
        f"strace -f (who made which call){timed}.", 118)
    out = [title, *(textwrap.fill("DEGRADED: " + note, 118) for note in degraded(tools))]
    for workload in config.workloads:
        mine = [r for r in rows if r.read_size == workload.read_size and r.reads == workload.reads]
        if mine:
            out += ["", workload_title(workload, config), "", *_one_table(mine)]
    return "\n".join([*out, "", legend(config)]) + "\n"


def write_json(rows: list[Row], path: Path) -> None:
    path.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")


def _short(api: str) -> str:
    """'kernaio (io_submit, lab 6)' -> 'kernaio': the slide has no room for the table's full names."""
    return re.sub(r"\s*\((?!caio)[^)]*\)", "", api)


def conclusions(rows: list[dict[str, Any]]) -> str:
    """What a table says, in one line of Markdown written from its rows (reveal.json's form): the deck's
    "your machine says" slide and notebook 03-04 conclude with it, never with a sentence the table could contradict."""
    groups: dict[str, dict[str, list[str]]] = {"threads": {}, "blocks-loop": {}, "kernel-async": {},
                                               "kernel-thread": {}}
    for r in rows:
        # kernel-async with a kernel thread of its own (SQPOLL's iou-sqp, io_uring's iou-wrk) is said apart:
        # no thread of the program, but a thread all the same.
        group = "kernel-thread" if r.get("verdict") == "kernel-async" and r.get("kernel_threads") else r.get("verdict")
        if group in groups:
            groups[str(group)].setdefault(_short(str(r["api"])), []).append(str(r["file_mode"]))
    modes = {str(r["file_mode"]) for r in rows}

    def named(api: str, mine: list[str]) -> str:
        if set(mine) == modes:
            return api
        files = "/".join(mine)   # 'aiofile (caio linux)' -> 'aiofile (caio linux, buffered)'
        return f"{api[:-1]}, {files})" if api.endswith(")") else f"{api} ({files})"

    def names(group: dict[str, list[str]]) -> str:
        return ", ".join(named(api, mine) for api, mine in group.items())

    threaded = len(groups["threads"])
    parts = [f"**{threaded} API{' reads' if threaded == 1 else 's read'} on threads**" if threaded else "",
             f"**the loop waited for the disk:** {names(groups['blocks-loop'])}" if groups["blocks-loop"] else
             "**no loop waited for the disk**",
             f"**no thread, no wait:** {names(groups['kernel-async'])}" if groups["kernel-async"] else "",
             f"**no wait, a kernel thread instead:** {names(groups['kernel-thread'])}" if groups["kernel-thread"]
             else ""]
    return " · ".join(p for p in parts if p)


def write_text(path: Path, text: str) -> None:
    path.write_text(text)


def agreement(runs: list[list[Row]]) -> tuple[str, bool]:
    """The verdict of every row in each run, side by side; (the text, whether all rows agree)."""
    keys = [(r.size_label, r.api, r.file_mode) for r in runs[0]]
    verdicts = {key: [] for key in keys}   # type: dict[tuple[str, str, str], list[str]]
    for rows in runs:
        for r in rows:
            verdicts.setdefault((r.size_label, r.api, r.file_mode), []).append(r.verdict)
    width = max(len(api) for _, api, _ in keys)
    lines = [f"{'reads':>6}  {'API':<{width}}  {'file':<8}  " + "  ".join(f"run {i + 1:<8}" for i in range(len(runs)))
             + "  agree"]
    same = 0
    for key, seen in verdicts.items():
        agrees = len(seen) == len(runs) and len(set(seen)) == 1
        same += agrees
        lines.append(f"{key[0]:>6}  {key[1]:<{width}}  {key[2]:<8}  " + "  ".join(f"{v:<12}" for v in seen)
                     + ("  yes" if agrees else "  NO"))
    lines.append(f"\n{same} of {len(verdicts)} rows gave the same verdict in all {len(runs)} runs.")
    return "\n".join(lines) + "\n", same == len(verdicts)


# --- the picture ------------------------------------------------------------------------

COLORS = {"pread64": "#1f77b4", "preadv": "#17becf", "read": "#2ca02c", "readv": "#8c564b", "preadv2": "#9467bd",
          "io_submit": "#d62728", "io_getevents": "#ff7f0e", "io_pgetevents": "#ff7f0e",
          "io_uring_enter": "#e377c2", "on CPU": "#bbbbbb", "device wait": "#000000"}
LAST = ("on CPU", "device wait")   # drawn over the calls they happen in


def _draw_lanes(ax: Axes, lanes: list[Lane], span_ms: float) -> None:
    thin = span_ms / 400   # a call of a few microseconds still shows as a sliver
    for y, lane in enumerate(lanes):
        kinds = sorted({b.name for b in lane.bars}, key=lambda k: (k in LAST, k))
        for kind in kinds:
            spans = [(b.start_ms, max(b.length_ms, thin)) for b in lane.bars if b.name == kind]
            wait = kind == "device wait"   # a thinner bar inside the call it happened in
            # A white edge keeps back-to-back calls of one thread apart.
            ax.broken_barh(spans, (y - (0.18 if wait else 0.35), 0.36 if wait else 0.7),
                           facecolors=COLORS.get(kind, "#7f7f7f"), hatch="//" if kind == "on CPU" else None,
                           linewidth=0 if wait else 0.6, edgecolor="#888888" if kind == "on CPU" else "white")
    ax.set_yticks(range(len(lanes)), [lane.label for lane in lanes], fontsize=7)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, span_ms)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)


def _title(row: Row) -> str:
    verdict = row.verdict
    if verdict == "unavailable" and "EINVAL" in row.reason:
        verdict += ": EINVAL (its buffer is not aligned)"
    elif verdict == "blocks-loop" and row.device_wait_ms:
        verdict += f" (waited {ms(row.device_wait_ms)} ms for the device)"
    elif verdict != "unavailable" and row.user_threads is not None:
        verdict += f" ({row.user_threads} user threads created)"
    return f"{row.api} — {row.file_mode}: {verdict}"


def picture_name(workload: Workload) -> str:
    return f"threads-{size_label(workload.read_size).replace(' ', '')}.png"   # threads-16KiB.png


def draw(rows: list[Row], path: Path) -> None:
    """One size of read: per API (rows) and kind of file (columns), a lane per thread, a bar per I/O call."""
    import matplotlib
    matplotlib.use("Agg")   # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    apis = list(dict.fromkeys(r.api for r in rows))
    modes = list(dict.fromkeys(r.file_mode for r in rows))
    cell = {(r.api, r.file_mode): r for r in rows}
    timed = any(r.timed_by == "perf" for r in rows)
    heights = [max([2] + [len(cell[a, m].lanes) for m in modes if (a, m) in cell]) for a in apis]
    # The x axis is labelled once per column, under its last picture that has lanes.
    lowest = {m: max([i for i, a in enumerate(apis) if (a, m) in cell and cell[a, m].lanes], default=-1)
              for m in modes}
    inches = 1.4 + 0.28 * sum(heights) + 0.55 * len(apis)
    fig = plt.figure(figsize=(15, inches))
    grid = fig.add_gridspec(len(apis), len(modes), height_ratios=heights, hspace=0.9, wspace=0.12,
                            left=0.09, right=0.99, top=1 - 1.0 / inches, bottom=0.4 / inches)
    for i, api in enumerate(apis):
        for j, mode in enumerate(modes):
            ax = fig.add_subplot(grid[i, j])
            row = cell.get((api, mode))
            if row is None:
                ax.axis("off")
                continue
            ax.set_title(_title(row), fontsize=8, loc="left",
                         fontweight="normal" if row.verdict == "unavailable" else "bold")
            if not row.lanes:   # nothing ran: say why instead
                ax.text(0.01, 0.5, textwrap.fill(row.reason, 110), fontsize=7, va="center",
                        transform=ax.transAxes, color="#555555")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            # Each picture has its own time scale: the APIs take from 5 to 200 ms.
            span = max([b.start_ms + b.length_ms for lane in row.lanes for b in lane.bars] + [1.0]) * 1.02
            _draw_lanes(ax, row.lanes, span)
            if i == lowest[mode]:
                ax.set_xlabel("ms since the reads began" + ("" if timed else " (under strace: slowed down)"),
                              fontsize=7)
    used = sorted({b.name for r in rows for lane in r.lanes for b in lane.bars}, key=lambda k: (k in LAST, k))
    handles = [Patch(facecolor=COLORS.get(n, "#7f7f7f"), hatch="//" if n == "on CPU" else None,
                     label={"on CPU": "kernel thread on a CPU", "device wait": "waiting for the device (D state)"}.get(
                         n, n)) for n in used]
    source = "perf, the middle pass" if timed else "strace -f -T, slowed down: perf cannot run here"
    size = size_label(rows[0].read_size) if rows else ""
    fig.suptitle(f"Which thread read, and did the loop wait for the device? Reads of {size}: a lane per thread, "
                 f"a bar per I/O call ({source})", fontsize=11, x=0.09, ha="left", y=1 - 0.15 / inches)
    if handles:
        fig.legend(handles=handles, loc="upper left", ncol=len(handles), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.085, 1 - 0.4 / inches))
    fig.savefig(path, dpi=110)
    plt.close(fig)
