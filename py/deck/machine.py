"""The deck's "your machine says" slides, written from what `make reveal` and `make bench` left in build/.

    <!-- machine: reveal -->    a table: per API, what happened on a buffered and on an O_DIRECT file (the
                                small reads), and a line of conclusions written from it
    <!-- machine: bench -->     IOPS per API at QD 32 from build/bench/bench.json, drawn large (SVG)

Without those files the marker becomes a line telling the presenter which target to run: the
deck builds either way, and shows this machine's numbers once they exist.
"""
from __future__ import annotations

import base64
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from reveal.report import conclusions

MARKER = re.compile(r"^<!--\s*machine:\s*(?P<what>\w+)\s*-->\s*$")
BENCH_QD = 32   # the queue depth the bench slide shows (make bench judges kernaio there)
ROWS_AT_FULL_SIZE = 11   # reveal rows that fit the slide at the table's normal size


def _cell(row: dict[str, Any]) -> str:
    """One API on one kind of file, in a few words."""
    verdict = row.get("verdict", "?")
    if verdict == "threads":
        return f"threads ×{row.get('user_threads', '?')}"
    if verdict == "blocks-loop":
        wait = row.get("device_wait_ms")
        return "**waits for the disk**" + (f" {wait:.1f} ms" if isinstance(wait, (int, float)) else "")
    if verdict == "kernel-async":
        kernel = row.get("kernel_threads") or 0
        return "kernel-async" + (f" (+{kernel} kernel thr)" if kernel else "")
    reason = str(row.get("reason", ""))
    return "EINVAL (unaligned)" if "EINVAL" in reason else "n/a"


def _headline(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The rows of the smallest reads (what applications do), and how they read; all rows for an older JSON."""
    sizes = sorted({int(r["read_size"]) for r in rows if r.get("read_size")})
    if not sizes:
        return rows, ""
    mine = [r for r in rows if r.get("read_size") == sizes[0]]
    size = f"{sizes[0] >> 20} MiB" if sizes[0] >= 1 << 20 else f"{sizes[0] >> 10} KiB"
    return mine, f"{mine[0].get('reads', '?')} reads of {size}, cold cache"


def reveal_table(build: Path) -> str:
    """Markdown for the reveal slide (a table and what it says, or how to get one)."""
    path = build / "reveal" / "reveal.json"
    if not path.is_file():
        return ("*Nothing measured here yet.* Run **`make reveal`** (about a minute), then `make slides`:\n"
                "this slide becomes a table of every \"async\" file API of your machine.")
    rows, how = _headline(json.loads(path.read_text()))
    modes = list(dict.fromkeys(str(r["file_mode"]) for r in rows))
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        cells.setdefault(str(r["api"]), {})[str(r["file_mode"])] = _cell(r)
    kernel = ""
    text = build / "reveal" / "reveal.txt"
    if text.is_file():
        m = re.search(r"\(Linux ([^)\s]+)\)", text.read_text())
        kernel = f", Linux {m.group(1)}" if m else ""
    lines = ["| API | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for api, by_mode in cells.items():
        lines.append(f"| {api} | " + " | ".join(by_mode.get(m, "–") for m in modes) + " |")
    if len(cells) > ROWS_AT_FULL_SIZE:   # more probes than fit at the normal size: a smaller font
        lines = ['<div class="dense">', "", *lines, "", "</div>"]
    lines.append("\n" + conclusions(rows))
    source = f"build/reveal/reveal.json (make reveal{kernel}{'; ' + how if how else ''})"
    lines.append(f'\n<div class="src">{escape(source)}</div>')
    return "\n".join(lines)


def _bar_chart(rows: list[dict[str, Any]]) -> str:
    """An SVG bar chart of IOPS per API at one queue depth, in the deck's diagram style:
    large text, one bar per API, kernaio red, fio (the ceiling) grey, the rest blue."""
    rows = sorted(rows, key=lambda r: -float(r["iops"]))
    top = max(float(r["iops"]) for r in rows)
    width, left, bar_w, row_h = 1280, 470, 560, 52
    height = 20 + row_h * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="26">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    for i, r in enumerate(rows):
        api, iops = str(r["api"]), float(r["iops"])
        y = 10 + i * row_h
        colour = "#c62828" if api == "kernaio" else "#9e9e9e" if api.startswith("fio") else "#1565c0"
        threads = r.get("threads")
        extra = "" if threads is None else f" · {threads} thr"
        length = max(4.0, bar_w * iops / top)
        parts += [f'<text x="{left - 14}" y="{y + 34}" text-anchor="end" fill="#1a1a2e">{escape(api)}</text>',
                  f'<rect x="{left}" y="{y + 8}" width="{length:.0f}" height="{row_h - 14}" fill="{colour}"/>',
                  f'<text x="{left + length + 12:.0f}" y="{y + 34}" fill="#1a1a2e">{iops:,.0f}{extra}</text>']
    return "\n".join([*parts, "</svg>"])


def bench_figure(build: Path) -> str:
    """Markdown for the bench slide (IOPS per API at QD 32, drawn large; or how to get it)."""
    doc = build / "bench" / "bench.json"
    rows: list[dict[str, Any]] = json.loads(doc.read_text()).get("rows", []) if doc.is_file() else []
    measured = [r for r in rows if r.get("iops")]
    if not measured:
        return ("*Nothing measured here yet.* Run **`make bench`** (about three minutes), then `make slides`:\n"
                "this slide becomes kernaio's IOPS against every peer, fio as the ceiling.")
    depths = sorted({int(r["qd"]) for r in measured})
    qd = BENCH_QD if BENCH_QD in depths else depths[-1]
    # (not the no-I/O reference row: several times fio's IOPS, it would flatten every bar)
    svg = _bar_chart([r for r in measured if int(r["qd"]) == qd and r.get("mode") != "no I/O"])
    data = base64.b64encode(svg.encode()).decode("ascii")
    return "\n".join([f"IOPS at queue depth {qd} · threads beside the loop's", "",
                      f"![h:430](data:image/svg+xml;base64,{data})",
                      '<div class="src">build/bench/bench.json (make bench); every depth: build/bench/iops.png</div>'])


def expand(what: str, build: Path) -> str:
    """The Markdown a `machine:` marker becomes; ValueError for an unknown one."""
    if what == "reveal":
        return reveal_table(build)
    if what == "bench":
        return bench_figure(build)
    raise ValueError(f"unknown machine slide {what!r} (reveal or bench)")
