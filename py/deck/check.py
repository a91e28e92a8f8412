"""`python -m deck check` (run by `make test`): the deck builds, and everything it points at is real.

- every file the deck names (labs/..., py/..., c/..., notebooks/...) exists, every `make X` written
  as code is a target of the Makefile (`## X:` help lines; `make labN` needs labs/0N-*/);
- every slide has speaker notes, and the HTML loads nothing from the network;
- with Chromium: no slide overflows (measured in the browser), and screenshots of the title slide
  and of a diagram slide (build/slides/shot-*.png) are not blank. Without Chromium these are
  skipped, with the reason.

Things another lab is still writing can be listed in PENDING: a reference to one of them that does
not exist yet is then reported, not failed. Empty that set once they have landed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from deck.build import Deck

PENDING: set[str] = set()   # e.g. "labs/08-topic": paths another lab is still writing (all have landed)
PATH = re.compile(r"(?<![\w./-])(?:labs|py|c|notebooks|docs|tools|slides)/[\w./-]*[\w/]")
MAKE = re.compile(r"`make ([a-z][\w-]*)[^`]*`")   # a command in a code span: `make lab1`, `make hint LAB=1`
COMMENT = re.compile(r"<!--(.*?)-->", re.S)
DIRECTIVE = re.compile(r"^\s*_?[A-Za-z]+\s*:")   # `<!-- _class: x -->` is a directive, not a note
REMOTE = [re.compile(p, re.I) for p in (r"\bsrc\s*=\s*[\"']?\s*(?:https?:)?//", r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//",
                                         r"url\(\s*[\"']?(?:https?:)?//", r"@import\s+(?:url\()?\s*[\"']?(?:https?:)?//")]


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)


def _pending(ref: str) -> bool:
    return any(ref == p or ref.startswith(p + "/") for p in PENDING)


def make_targets(root: Path) -> set[str]:
    """The targets the Makefile documents (`## name: text`)."""
    return set(re.findall(r"^## ([\w-]+):", (root / "Makefile").read_text(), re.M))


def check_references(deck: Deck, root: Path, report: Report) -> None:
    """Files and make targets named anywhere in the deck's source (notes included)."""
    targets = make_targets(root)
    for slide in deck.slides:
        where = f"slides/deck.md:{slide.line} (slide {slide.number})"
        for ref in dict.fromkeys(PATH.findall(slide.source)):
            if (root / ref).exists():
                continue
            (report.pending if _pending(ref.rstrip("/")) else report.errors).append(f"{where}: {ref} does not exist")
        for target in dict.fromkeys(MAKE.findall(slide.source)):
            lab = re.fullmatch(r"lab(\d+)", target)
            if lab:
                folders = list((root / "labs").glob(f"{int(lab.group(1)):02d}-*/"))
                if folders and "labN" in targets:
                    continue
                known = [p for p in PENDING if p.startswith(f"labs/{int(lab.group(1)):02d}-")]
                (report.pending if known else report.errors).append(
                    f"{where}: make {target}: there is no labs/{int(lab.group(1)):02d}-*/ folder")
            elif target not in targets:
                report.errors.append(f"{where}: make {target}: not a target of the Makefile (no `## {target}:` line)")


def check_notes(deck: Deck, report: Report) -> None:
    """Every slide has a presenter note: an HTML comment that is not a directive."""
    for slide in deck.slides:
        notes = [c for c in COMMENT.findall(slide.source) if c.strip() and not DIRECTIVE.match(c)]
        if not notes:
            report.errors.append(f"slides/deck.md:{slide.line} (slide {slide.number}): no speaker notes")


def check_rendered(deck: Deck, html: str, report: Report) -> None:
    """Marp made as many slides as the checker counts (else the slide numbers above are wrong),
    kept a note for each, and the HTML loads nothing from the network (links to click are fine)."""
    rendered = len(re.findall(r"<svg[^>]*data-marpit-svg", html))
    if rendered != len(deck.slides):
        report.errors.append(f"Marp made {rendered} slides, the deck's source has {len(deck.slides)}: "
                             "a '---' the checker and Marp read differently?")
    notes = len(re.findall(r'<div class="bespoke-marp-note"[^>]*>(?!</div>)', html))   # not empty
    if notes != len(deck.slides):
        report.errors.append(f"deck.html has {notes} presenter notes for {len(deck.slides)} slides")
    for pattern in REMOTE:
        m = pattern.search(html)
        if m:
            report.errors.append(f"deck.html loads a remote resource: ...{html[max(0, m.start() - 40):m.end() + 60]}...")


def _chromium(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium headless with a fresh profile, no network chatter; --no-sandbox only as root."""
    with tempfile.TemporaryDirectory(prefix="deck-chromium-") as profile:
        argv = [chromium, "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={profile}", "--window-size=1280,720", *args]
        if os.geteuid() == 0 or os.environ.get("CHROME_NO_SANDBOX"):
            argv.insert(1, "--no-sandbox")
        return subprocess.run(argv, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)


# Runs in the page: for each slide, how far its content reaches beyond the slide, and any code
# block wider than its box. Written into an attribute, which --dump-dom prints.
MEASURE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const out = [];
  document.querySelectorAll('svg[data-marpit-svg]').forEach((svg, i) => {
    const all = svg.querySelectorAll('section'), s = all[all.length - 1];
    const pre = [...s.querySelectorAll('pre')].some(p => p.scrollWidth > p.clientWidth + 1);
    out.push([i + 1, s.scrollWidth - s.clientWidth, s.scrollHeight - s.clientHeight, pre]);
  });
  document.body.setAttribute('data-deck-measure', JSON.stringify(out));
}, 300));
</script>"""


def check_overflow(html_path: Path, chromium: str, report: Report) -> None:
    """Lay the deck out in Chromium; a slide whose content does not fit is an error."""
    probe = html_path.with_name("measure.html")
    probe.write_text(html_path.read_text().replace("</body>", MEASURE + "</body>"))
    try:
        done = _chromium(chromium, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    m = re.search(r'data-deck-measure="([^"]*)"', done.stdout)
    if m is None:
        report.errors.append("could not measure the slides in Chromium:\n" + done.stderr.strip()[-800:])
        return
    for number, wide, tall, pre in json.loads(m.group(1).replace("&quot;", '"')):
        if wide > 1 or tall > 1 or pre:
            what = ", ".join(x for x in (f"{tall}px too tall" if tall > 1 else "", f"{wide}px too wide" if wide > 1 else "",
                                         "a code line wider than its box" if pre else "") if x)
            report.errors.append(f"slide {number} overflows: {what}")
    report.info.append("no slide overflows (measured in Chromium)")


def not_blank(png: Path) -> str | None:
    """None if the picture shows something; else why it looks blank."""
    from PIL import Image
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 16)
        pixels = rgb.width * rgb.height
    if colours is None:
        return None   # more than 65536 colours: certainly not blank
    top = max(count for count, _ in colours)
    if len(colours) < 8 or top > 0.995 * pixels:   # a heading alone covers ~1%
        return f"{png.name}: {len(colours)} colours, the most common covers {100 * top / pixels:.0f}%: blank?"
    return None


# The on-screen controller (page number, buttons) would cover the bottom of every screenshot.
HIDE_CONTROLS = "<style>.bespoke-marp-osc { display: none !important; }</style>"


def screenshot(html_path: Path, chromium: str, number: int, png: Path) -> str | None:
    """Render slide `number` of the deck to png; None if it worked and is not blank, else why."""
    png.unlink(missing_ok=True)
    page = html_path.with_name("screenshot.html")
    page.write_text(html_path.read_text().replace("</head>", HIDE_CONTROLS + "</head>", 1))
    try:
        done = _chromium(chromium, f"--screenshot={png}", "--virtual-time-budget=3000", f"{page.as_uri()}#{number}")
    finally:
        page.unlink()
    if not png.is_file():
        return f"slide {number}: Chromium wrote no screenshot:\n" + done.stderr.strip()[-800:]
    return not_blank(png)


def check_screens(deck: Deck, html_path: Path, chromium: str | None, report: Report,
                  extra: list[int] | None = None) -> None:
    """The title slide and the first diagram slide (plus any asked for) render and are not blank."""
    if chromium is None:
        report.info.append("screenshots and the overflow check SKIPPED: no Chromium here (Debian: "
                           "`tools/setup-system.sh slides` installs it; elsewhere set CHROME_PATH)")
        return
    check_overflow(html_path, chromium, report)
    diagram = next((s.number for s in deck.slides if s.diagrams), None)
    if diagram is None:
        report.errors.append("no slide shows a diagram (slides/diagrams/*.svg)")
    shots = {"title": 1, "diagram": diagram or 1} | {f"slide{n}": n for n in extra or []}
    for name, number in shots.items():
        png = html_path.with_name(f"shot-{name}.png")
        problem = screenshot(html_path, chromium, number, png)
        if problem:
            report.errors.append(problem)
        else:
            report.info.append(f"slide {number} ({name}) renders: {png.relative_to(html_path.parents[2])}")
