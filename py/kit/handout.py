"""`make handout`: docs/instructors/handout.md, one Marp slide the size of an A4 page, into build/handout/.

The deck's tooling does the work (py/deck/build.py): the same Marp CLI from slides/package-lock.json,
the same offline configuration (slides/marp.config.mjs), the same Chromium for the PDF. Only the theme
is the handout's own (docs/instructors/handout.css: the page size and three columns). With Chromium the
page is also laid out and measured (deck.check.check_overflow): content that does not fit the page is an
error, not a silent cut, and the PDF must have exactly one page.
"""
from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from deck.build import BuildError, find_chromium, marp
from deck.check import REMOTE, Report, check_overflow

SOURCE = Path("docs/instructors/handout.md")
THEME = Path("docs/instructors/handout.css")
OUT = Path("build/handout")


@dataclass
class Handout:
    html: Path
    pdf: Path | None
    pages: int | None           # of the PDF
    seconds: float
    problems: list[str] = field(default_factory=list)   # it does not fit, or loads from the network
    notes: list[str] = field(default_factory=list)      # no PDF, and why


def pdf_pages(pdf: Path) -> int:
    """How many pages a PDF has: its page objects (/Type /Page, not /Pages), looked for in the file and
    in its compressed streams too (Marp's PDFs keep their objects in object streams)."""
    data = pdf.read_bytes()
    texts = [data]
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            texts.append(zlib.decompress(m.group(1)))
        except zlib.error:
            continue   # not a Flate stream (an image): no objects in it
    return sum(len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", t)) for t in texts)


def offline_problems(html: str) -> list[str]:
    """What in the HTML would load from the network (links to click are fine)."""
    found = []
    for pattern in REMOTE:
        m = pattern.search(html)
        if m:
            found.append(f"handout.html loads a remote resource: ...{html[max(0, m.start() - 40):m.end() + 60]}...")
    return found


def build(root: Path, pdf: bool = True) -> Handout:
    """Write build/handout/handout.html (always) and handout.pdf (with Chromium, unless pdf=False).

    BuildError when Marp cannot run (no Node.js, npm ci failed); the page's own problems (overflow,
    more than one page, a remote resource) are listed in Handout.problems.
    """
    started = time.monotonic()
    out = root / OUT
    out.mkdir(parents=True, exist_ok=True)
    source, theme = root / SOURCE, root / THEME
    for needed in (source, theme):
        if not needed.is_file():
            raise BuildError(f"{needed.relative_to(root)} is missing")
    html = out / "handout.html"
    marp(root, source, html, "--theme", str(theme))
    problems = offline_problems(html.read_text())
    notes: list[str] = []
    chromium = find_chromium()
    pdf_path: Path | None = None
    pages: int | None = None
    if chromium is None:
        notes.append("no PDF and no measure of the page: Chromium was not found (Debian: "
                     "`tools/setup-system.sh slides`; elsewhere set CHROME_PATH)")
    else:
        report = Report()
        check_overflow(html, chromium, report)
        problems += [e.replace("slide 1 overflows", "the handout does not fit its page") for e in report.errors]
        if pdf:
            pdf_path = out / "handout.pdf"
            marp(root, source, pdf_path, "--theme", str(theme), "--pdf", chromium=chromium)
            pages = pdf_pages(pdf_path)
            if pages != 1:
                problems.append(f"handout.pdf has {pages} pages: the handout is one page")
        else:
            notes.append("PDF not asked for")
    return Handout(html, pdf_path, pages, time.monotonic() - started, problems, notes)
