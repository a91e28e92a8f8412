"""The deck's "your machine says" slides, written from what `make reveal` and `make bench` left in build/.

    <!-- machine: reveal-threads -->  who reads the file, per API, on a buffered file (page cache dropped)
                                     and on an O_DIRECT one: threads, or the loop's own thread
    <!-- machine: reveal-loop -->     the APIs whose loop thread makes the I/O calls: did it wait for the
                                     disk, how long it was busy inside them, the verdict, and a line of
                                     conclusions written from the table (reveal.report.conclusions)
    <!-- machine: bench -->          IOPS per API at QD 32 from build/bench/bench.json, drawn large (SVG),
                                     with threads and the worst loop stall beside each bar

Both reveal slides show the small reads (what applications do); reveal.txt has the large ones too.
Without those files a marker becomes a line telling the presenter which target to run: the deck
builds either way, and shows this machine's numbers once they exist.
"""
from __future__ import annotations

import base64
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from reveal.analyze import ms, size_label
from reveal.report import conclusions

MARKER = re.compile(r"^<!--\s*machine:\s*(?P<what>[\w-]+)\s*-->\s*$")
BENCH_QD = 32   # the queue depth the bench slide shows (make bench judges kernaio there)
ROWS_AT_FULL_SIZE = 11   # table rows that fit a slide at the table's normal size (with a caption)
ROWS_ABOVE_CONCLUSIONS = 6   # the same with two or three lines of conclusions under the table
LOOP_VERDICTS = ("blocks-loop", "kernel-async")   # the loop thread made the I/O calls itself
# The file modes as the tables name them, and what each one means for a read.
MODE_HEADINGS = {"buffered": "buffered file (cache dropped)", "O_DIRECT": "O_DIRECT file (no cache)"}


def _unavailable(row: dict[str, Any]) -> str:
    reason = str(row.get("reason", ""))
    return "EINVAL (unaligned)" if "EINVAL" in reason else "n/a"


def _who_reads(row: dict[str, Any]) -> str:
    """One API on one kind of file: which threads read it."""
    verdict = row.get("verdict", "?")
    if verdict == "threads":
        return f"threads ×{row.get('user_threads', '?')}"
    if verdict in LOOP_VERDICTS:
        kernel = int(row.get("kernel_threads") or 0)
        return "the loop thread" + (f" + {kernel} kernel thread{'s' * (kernel > 1)}" if kernel else "")
    return _unavailable(row)


def _short(api: str) -> str:
    """'kernaio (io_submit, lab 6)' -> 'kernaio (io_submit)': the lab is on the previous slide."""
    return re.sub(r",\s*lab \d+\)", ")", api)


def _headline(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The rows of the smallest reads (what applications do), and how they read; all rows for an older JSON."""
    sizes = sorted({int(r["read_size"]) for r in rows if r.get("read_size")})
    if not sizes:
        return rows, ""
    mine = [r for r in rows if r.get("read_size") == sizes[0]]
    return mine, f"{mine[0].get('reads', '?')} reads of {size_label(sizes[0])}, cold cache"


def _table(header: list[str], body: list[list[str]], fit: int = ROWS_AT_FULL_SIZE) -> list[str]:
    """A Markdown table; a smaller font (the "dense" class) when it has more rows than `fit`."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
             *("| " + " | ".join(cells) + " |" for cells in body)]
    return ['<div class="dense">', "", *lines, "", "</div>"] if len(body) > fit else lines


def _block(css_class: str, markdown: str) -> list[str]:
    """Markdown in a div of the deck's style (blank lines around it, or Marp would not render it)."""
    return [f'<div class="{css_class}">', "", markdown, "", "</div>"]


def _source(build: Path, how: str) -> str:
    """The caption: where the numbers come from (the kernel is in reveal.txt's first line)."""
    text = build / "reveal" / "reveal.txt"
    m = re.search(r"\(Linux ([^)\s]+)\)", text.read_text()) if text.is_file() else None
    kernel = f", Linux {m.group(1)}" if m else ""
    return f'<div class="src">{escape(f"build/reveal/reveal.json (make reveal{kernel}; {how})")}</div>'


def _reveal_rows(build: Path) -> tuple[list[dict[str, Any]], str] | None:
    path = build / "reveal" / "reveal.json"
    return _headline(json.loads(path.read_text())) if path.is_file() else None


NOTHING_YET = ("*Nothing measured here yet.* Run **`make reveal`** (about a minute), then `make slides`:\n"
               "this slide becomes a table of every \"async\" file API of your machine.")


def reveal_threads(build: Path) -> str:
    """Markdown for "who reads the file?": one row per API, a column per kind of file."""
    found = _reveal_rows(build)
    if found is None:
        return NOTHING_YET
    rows, how = found
    modes = list(dict.fromkeys(str(r["file_mode"]) for r in rows))
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        cells.setdefault(str(r["api"]), {})[str(r["file_mode"])] = _who_reads(r)
    body = [[api, *(by_mode.get(m, "–") for m in modes)] for api, by_mode in cells.items()]
    return "\n".join([*_table(["API", *(MODE_HEADINGS.get(m, m) for m in modes)], body), "", _source(build, how)])


def reveal_loop(build: Path) -> str:
    """Markdown for "did the loop wait?": the rows whose loop thread made the I/O calls, with the loop's
    device wait and busy time (reveal's stall columns), the verdict, and the conclusions of the whole table."""
    found = _reveal_rows(build)
    if found is None:
        return NOTHING_YET
    rows, how = found
    body = []
    for r in (r for r in rows if r.get("verdict") in LOOP_VERDICTS):
        waited = r["verdict"] == "blocks-loop"
        wait = f"{ms(float(r.get('device_wait_ms') or 0))} ms ({r.get('waited_passes', '?')}/{r.get('passes', '?')})"
        body.append([_short(str(r["api"])), str(r["file_mode"]), f"**{wait}**" if waited else wait,
                     f"{ms(float(r.get('submit_ms') or 0))} ms", "**waits for the disk**" if waited else "kernel-async"])
    header = ["API", "file", "disk wait (passes)", "busy in the calls", "verdict"]
    return "\n".join([*_table(header, body, fit=ROWS_ABOVE_CONCLUSIONS), "", *_block("verdicts", conclusions(rows)),
                      "", _source(build, how)])


def _bar_chart(rows: list[dict[str, Any]]) -> str:
    """An SVG bar chart of IOPS per API at one queue depth, in the deck's diagram style: large text, one
    bar per API (kernaio red, fio, the ceiling, grey, the rest blue), its threads and worst loop stall beside
    it, and the rows that read a buffered file (not O_DIRECT) named so."""
    rows = sorted(rows, key=lambda r: -float(r["iops"]))
    top = max(float(r["iops"]) for r in rows)
    width, left, bar_w, row_h = 1280, 560, 420, 40   # 26px text in 40px rows: 20px or more on the slide
    height = 20 + row_h * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="26">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    for i, r in enumerate(rows):
        api, iops = str(r["api"]), float(r["iops"])
        label = api + (", buffered" if str(r.get("mode", "")).startswith("buffered") else "")
        y = 10 + i * row_h
        colour = "#c62828" if api == "kernaio" else "#9e9e9e" if api.startswith("fio") else "#1565c0"
        extra = "" if r.get("threads") is None else f" · {r['threads']} thr"
        extra += "" if r.get("stall_ms") is None else f" · stall {ms(float(r['stall_ms']))} ms"
        length = max(4.0, bar_w * iops / top)
        parts += [f'<text x="{left - 14}" y="{y + 29}" text-anchor="end" fill="#1a1a2e">{escape(label)}</text>',
                  f'<rect x="{left}" y="{y + 6}" width="{length:.0f}" height="{row_h - 10}" fill="{colour}"/>',
                  f'<text x="{left + length + 12:.0f}" y="{y + 29}" fill="#1a1a2e">{iops:,.0f}{extra}</text>']
    return "\n".join([*parts, "</svg>"])


def bench_figure(build: Path) -> str:
    """Markdown for the bench slide (IOPS per API at QD 32, drawn large; or how to get it)."""
    doc = build / "bench" / "bench.json"
    bench: dict[str, Any] = json.loads(doc.read_text()) if doc.is_file() else {}
    measured = [r for r in bench.get("rows", []) if r.get("iops")]
    if not measured:
        return ("*Nothing measured here yet.* Run **`make bench`** (about four minutes), then `make slides`:\n"
                "this slide becomes kernaio's IOPS against every peer, fio as the ceiling.")
    depths = sorted({int(r["qd"]) for r in measured})
    qd = BENCH_QD if BENCH_QD in depths else depths[-1]
    # (not the no-I/O reference row: several times fio's IOPS, it would flatten every bar)
    svg = _bar_chart([r for r in measured if int(r["qd"]) == qd and r.get("mode") != "no I/O"])
    data = base64.b64encode(svg.encode()).decode("ascii")
    idle = bench.get("idle_loop_stall_ms")
    floor = f" (an idle loop: {ms(float(idle))} ms)" if isinstance(idle, (int, float)) else ""
    title = f"IOPS at QD {qd} · O_DIRECT unless buffered · threads · worst loop stall{floor}"
    return "\n".join([*_block("chart-title", title), "", f"![h:390](data:image/svg+xml;base64,{data})",
                      '<div class="src">build/bench/bench.json (make bench); every depth: build/bench/iops.png</div>'])


def expand(what: str, build: Path) -> str:
    """The Markdown a `machine:` marker becomes; ValueError for an unknown one."""
    slides = {"reveal-threads": reveal_threads, "reveal-loop": reveal_loop, "bench": bench_figure}
    if what not in slides:
        raise ValueError(f"unknown machine slide {what!r} ({', '.join(slides)})")
    return slides[what](build)
