"""The reveal's outputs: the table (terminal and reveal.txt), reveal.json, and threads.png."""
from __future__ import annotations

import json
import platform
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reveal.analyze import Lane, Row, ms
from reveal.run import Config
from xray.causes import memory_filesystem

if TYPE_CHECKING:
    from matplotlib.axes import Axes

VERDICTS = """\
verdicts: threads      = the reads ran on threads other than the loop's (the loop itself never waited for the disk)
          blocks-loop  = the loop thread itself sat in a call that waited for the disk: every other coroutine waited too
          kernel-async = the loop thread only submitted and collected; the kernel did the reads (with its own threads
                         when the kernel column says so)
          unavailable  = it cannot run here, or not this way; the "why" line says why
user thr = threads the process created (clone/clone3 under strace -f); kernel thr = io_uring's iou-wrk/iou-sqp
threads seen in /proc/PID/task during the reads. loop stall = the longest I/O call of the loop thread (strace -T; the
shortest such maximum over the traced runs); heartbeat = how late a coroutine that sleeps 1 ms at a time woke up at
worst, in a run without strace (which slows everything down)."""


def _calls(row: Row) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(row.io_syscalls.items(), key=lambda kv: -kv[1])) or "-"


def _where(row: Row) -> str:
    others = f"{row.io_threads} other" if row.io_threads else ""
    return {"loop": "loop", "other": others, "loop+other": f"loop + {others}", "kernel": "kernel"}.get(
        row.io_thread or "", "-")


def _stall(row: Row) -> str:
    if row.max_stall_ms is None:
        return "-"
    return f"{ms(row.max_stall_ms)} ms {row.stall_call}" if row.stall_call else "0"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def table(rows: list[Row], config: Config) -> str:
    """The table as text: a line per row, and its reason on the line below."""
    header = ["API", "file", "user thr", "kernel thr", "bytes moved by", "on thread", "loop stall",
              "heartbeat", "verdict"]
    cells = [[r.api, r.file_mode, _count(r.user_threads), _count(r.kernel_threads), _calls(r), _where(r), _stall(r),
              "-" if r.heartbeat_late_ms is None else f"{ms(r.heartbeat_late_ms)} ms", r.verdict] for r in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    right = {2, 3, 7}   # numbers

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(padded).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for row, values in zip(rows, cells):
        out += [line(values), f"    why: {row.reason}"]
    memory = memory_filesystem(config.data_file.parent)
    source = (f"from {memory}, in memory: no device is read here, so no row waits for a disk and the O_DIRECT rows "
              "are not measured (set LAB_DATA_DIR to a directory on a disk)" if memory else "from a cold page cache")
    title = textwrap.fill(
        f"make reveal: the \"async\" file APIs of this machine (Linux {platform.release()}). Each one reads "
        f"{config.blocks} blocks of {config.block_size >> 20} MiB of {config.data_file.name}, "
        f"{config.concurrency} at a time, in a shuffled order, {source}. A loop-thread I/O call of "
        f"{config.stall_ms:g} ms or more is a stall.", 118)
    return "\n".join([title, "", *out, "", VERDICTS]) + "\n"


def write_json(rows: list[Row], path: Path) -> None:
    path.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")


# --- the picture ------------------------------------------------------------------------

COLORS = {"pread64": "#1f77b4", "preadv": "#17becf", "read": "#2ca02c", "readv": "#8c564b", "preadv2": "#9467bd",
          "io_submit": "#d62728", "io_getevents": "#ff7f0e", "io_pgetevents": "#ff7f0e",
          "io_uring_enter": "#e377c2", "alive": "#bbbbbb"}


def _draw_lanes(ax: Axes, lanes: list[Lane], span_ms: float) -> None:
    thin = span_ms / 400   # a call of a few microseconds still shows as a sliver
    for y, lane in enumerate(lanes):
        for kind in {b.name for b in lane.bars}:
            spans = [(b.start_ms, max(b.length_ms, thin)) for b in lane.bars if b.name == kind]
            # A white edge keeps back-to-back calls of one thread apart.
            ax.broken_barh(spans, (y - 0.35, 0.7), facecolors=COLORS.get(kind, "#7f7f7f"),
                           hatch="//" if kind == "alive" else None, linewidth=0.6,
                           edgecolor="#888888" if kind == "alive" else "white")
    ax.set_yticks(range(len(lanes)), [lane.label for lane in lanes], fontsize=7)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, span_ms)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)


def _title(row: Row) -> str:
    verdict = row.verdict
    if verdict == "unavailable" and "EINVAL" in row.reason:
        verdict += ": EINVAL (its buffer is not aligned)"
    elif verdict != "unavailable" and row.user_threads is not None:
        verdict += f" ({row.user_threads} user threads created)"
    return f"{row.api} — {row.file_mode}: {verdict}"


def draw(rows: list[Row], path: Path) -> None:
    """threads.png: per API (rows) and kind of file (columns), a lane per thread, a bar per I/O call."""
    import matplotlib
    matplotlib.use("Agg")   # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    apis = list(dict.fromkeys(r.api for r in rows))
    modes = list(dict.fromkeys(r.file_mode for r in rows))
    cell = {(r.api, r.file_mode): r for r in rows}
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
            # Each picture has its own time scale: the APIs take from 5 to 200 ms under strace.
            span = max([b.start_ms + b.length_ms for lane in row.lanes for b in lane.bars] + [1.0]) * 1.02
            _draw_lanes(ax, row.lanes, span)
            if i == lowest[mode]:
                ax.set_xlabel("ms since the reads began (under strace: slowed down)", fontsize=7)
    used = sorted({b.name for r in rows for lane in r.lanes for b in lane.bars})
    handles = [Patch(facecolor=COLORS.get(n, "#7f7f7f"), hatch="//" if n == "alive" else None,
                     label="kernel worker seen alive" if n == "alive" else n) for n in used]
    fig.suptitle("Which thread moved the bytes? One lane per thread, a bar per I/O syscall (strace -f -T)",
                 fontsize=11, x=0.09, ha="left", y=1 - 0.15 / inches)
    if handles:
        fig.legend(handles=handles, loc="upper left", ncol=len(handles), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.085, 1 - 0.4 / inches))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cannot_write(out: Path, target: str) -> str:
    """Why the outputs (out) or the data files (the labs' data directory) cannot be written, with
    what to do; '' when both can. Checked before measuring, so no minute of measuring is lost."""
    from xray.causes import unwritable
    from xray.doctor import DATA_DIR
    problems = [p for p in (unwritable(out), unwritable(DATA_DIR)) if p]
    if not problems:
        return ""
    return (f"make {target}: {'; '.join(problems)}, so nothing was measured. Write elsewhere: "
            f"python -m {target} --out DIR, and LAB_DATA_DIR=DIR for its data file (a directory on a disk, "
            "not tmpfs); or copy the checkout to a writable place (git clone) and run make there.")


def write_all(out: Path, table_name: str, table: str, outputs: dict[str, Callable[[Path], None]],
              elapsed: float, root: Path) -> None:
    """Write the table and each output (name -> writer) into out; print the table, then what
    was written where (relative to root when inside it). make reveal and make bench both end so."""
    print("\n" + table)   # first: whatever happens to the files, the measurement is not lost
    try:
        where = str(out.resolve().relative_to(root))
    except ValueError:
        where = str(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / table_name).write_text(table)
        for name, write in outputs.items():
            write(out / name)
    except OSError as err:
        print(f"The table is above, but it could not be written to {where}/: {err}. "
              "Run again with --out pointing at a writable directory.")
        return
    print(f"Written to {where}/: {', '.join([table_name, *outputs])} ({elapsed:.0f} s)")
