"""`python -m deck check` (run by `make test`): the deck builds, and everything it points at is real.

- every file the deck names (labs/..., py/..., c/..., notebooks/...) exists, every `make X` written
  as code is a target of the Makefile (`## X:` help lines; `make labN` needs labs/0N-*/);
- every slide has speaker notes, and the HTML loads nothing from the network;
- with Chromium, measured in the browser, every slide reads from the back of a hall: nothing
  overflows, code is 20px or more, no text or picture lies under the navigation controls (where
  they appear on a 720p and on a 1080p screen), no heading breaks a word across two lines; and
  screenshots of the title slide and of a diagram slide (build/slides/shot-*.png) are not blank.
  Without Chromium these are skipped, with the reason.
- (at build time, deck.include: no code sample shows a lab's solution.)

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
from html import unescape
from pathlib import Path
from typing import Any

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


def check_rendered(deck: Deck, html: str, report: Report, name: str = "deck.html") -> None:
    """Marp made as many slides as the checker counts (else the slide numbers above are wrong),
    kept a note for each, and the HTML (name) loads nothing from the network (links to click are fine)."""
    rendered = len(re.findall(r"<svg[^>]*data-marpit-svg", html))
    if rendered != len(deck.slides):
        report.errors.append(f"{name}: Marp made {rendered} slides, the deck's source has {len(deck.slides)}: "
                             "a '---' the checker and Marp read differently?")
    notes = len(re.findall(r'<div class="bespoke-marp-note"[^>]*>(?!</div>)', html))   # not empty
    if notes != len(deck.slides):
        report.errors.append(f"{name} has {notes} presenter notes for {len(deck.slides)} slides")
    for pattern in REMOTE:
        m = pattern.search(html)
        if m:
            report.errors.append(f"{name} loads a remote resource: ...{html[max(0, m.start() - 40):m.end() + 60]}...")


def _chromium(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium headless with a fresh profile, no network chatter; --no-sandbox only as root."""
    with tempfile.TemporaryDirectory(prefix="deck-chromium-") as profile:
        argv = [chromium, "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={profile}", "--window-size=1280,720", *args]
        if os.geteuid() == 0 or os.environ.get("CHROME_NO_SANDBOX"):
            argv.insert(1, "--no-sandbox")
        return subprocess.run(argv, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)


# Runs in the page. For each slide: how far its content reaches beyond the slide, whether a code
# block is wider than its box, the smallest code font, where every line of text and every image
# lies (slide coordinates: 1280 x 720, whatever the window), and which heading words the browser
# broke across two lines. Also the size of the navigation controls. Written into an attribute,
# which --dump-dom prints; deck.check judges it (readability()).
MEASURE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const osc = document.querySelector('.bespoke-marp-osc');
  let controls = null;
  if (osc) {
    osc.style.display = 'block';                  // hidden until the mouse moves: measure it anyway
    const r = osc.getBoundingClientRect();
    controls = {width: r.width, height: r.height, bottom: parseFloat(getComputedStyle(osc).bottom) || 0};
  }
  const lines = node => { const range = document.createRange(); range.selectNodeContents(node);
                          return [...range.getClientRects()].filter(r => r.width > 0 && r.height > 0); };
  const slides = [];
  document.querySelectorAll('svg[data-marpit-svg]').forEach((svg, i) => {
    const all = svg.querySelectorAll('section'), s = all[all.length - 1], box = s.getBoundingClientRect();
    const out = {number: i + 1, laid_out: box.width > 0 && box.height > 0,
                 wide: s.scrollWidth - s.clientWidth, tall: s.scrollHeight - s.clientHeight,
                 pre_overflow: [...s.querySelectorAll('pre')].some(p => p.scrollWidth > p.clientWidth + 1),
                 code_min: null, text: [], images: [], broken: []};
    const kx = 1280 / box.width, ky = 720 / box.height;
    const place = r => [(r.left - box.left) * kx, (r.top - box.top) * ky, r.width * kx, r.height * ky];
    const walker = document.createTreeWalker(s, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); out.laid_out && node; node = walker.nextNode()) {
      const text = node.textContent.trim();
      if (!text) continue;
      lines(node).forEach(r => out.text.push([...place(r), text.slice(0, 50)]));
      if (node.parentElement.closest('pre, code')) {
        const px = parseFloat(getComputedStyle(node.parentElement).fontSize);   // CSS px of the 1280-wide slide
        if (out.code_min === null || px < out.code_min[0]) out.code_min = [px, text.slice(0, 50)];
      }
    }
    s.querySelectorAll('img').forEach(img => out.images.push([...place(img.getBoundingClientRect()), img.alt || 'an image']));
    s.querySelectorAll('h1, h2').forEach(h => {
      const walk = document.createTreeWalker(h, NodeFilter.SHOW_TEXT);
      for (let node = walk.nextNode(); node; node = walk.nextNode()) {
        for (const m of node.textContent.matchAll(/\\S+/g)) {
          const range = document.createRange();
          range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
          const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
          if (tops.size > 1) out.broken.push(m[0]);
        }
      }
    });
    slides.push(out);
  });
  document.body.setAttribute('data-deck-measure', JSON.stringify({controls, slides}));
}, 300));
</script>"""

CODE_MIN_PX = 20    # code smaller than this cannot be read from the back of a hall
# The controls (page number, arrows) appear at the bottom of the screen when the mouse moves. Their
# size is fixed in screen pixels, so the part of the slide they cover depends on the screen: these are
# the 16:9 screens a talk is given on (a projector's 720p and 1080p).
SCREENS = (1280, 1920)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    def overlaps(self, other: Box) -> bool:
        return self.x < other.x + other.w and other.x < self.x + self.w and \
            self.y < other.y + other.h and other.y < self.y + self.h


def controls_zone(controls: dict[str, float], screen_width: int) -> Box:
    """Where the controls lie on the slide (1280 x 720 coordinates) on a 16:9 screen that wide: they sit
    `bottom` screen pixels above its bottom edge, centred, and keep their size in screen pixels."""
    scale = screen_width / 1280
    w, h = controls["width"] / scale, controls["height"] / scale
    return Box(640 - w / 2, 720 - (controls["bottom"] + controls["height"]) / scale, w, h)


def overflows(slide: dict[str, Any]) -> list[str]:
    """'slide N overflows: ...' when one measured slide's content does not fit it; [] when it does."""
    what = [x for x in (f"{slide['tall']}px too tall" if slide["tall"] > 1 else "",
                        f"{slide['wide']}px too wide" if slide["wide"] > 1 else "",
                        "a code line wider than its box" if slide["pre_overflow"] else "") if x]
    return [f"slide {slide['number']} overflows: {', '.join(what)}"] if what else []


def readability(measured: dict[str, Any]) -> list[str]:
    """What makes a slide hard to read in a hall, from MEASURE's output: content beyond the slide, code
    smaller than CODE_MIN_PX, text or a picture under the navigation controls, a heading word broken
    across two lines. One message per problem."""
    problems: list[str] = []
    controls = measured.get("controls")
    zones = [(f"{w}x{w * 9 // 16}", controls_zone(controls, w)) for w in SCREENS] if controls else []
    for slide in measured["slides"]:
        where = f"slide {slide['number']}"
        if not slide["laid_out"]:
            problems.append(f"{where}: the browser did not lay it out, so it could not be measured")
            continue
        problems += overflows(slide)
        if slide["code_min"] and slide["code_min"][0] < CODE_MIN_PX:
            px, sample = slide["code_min"]
            problems.append(f"{where}: code in {px:g}px ({sample!r}): at least {CODE_MIN_PX}px reads from the back")
        for x, y, w, h, sample in slide["text"] + slide["images"]:
            hidden = [screen for screen, zone in zones if Box(x, y, w, h).overlaps(zone)]
            if hidden:
                problems.append(f"{where}: {sample!r} (y {y:.0f}-{y + h:.0f}) lies under the navigation controls "
                                f"on a {' and a '.join(hidden)} screen")
        for word in slide["broken"]:
            problems.append(f"{where}: the heading breaks {word!r} across two lines")
    return problems


def measure(html_path: Path, chromium: str, report: Report) -> dict[str, Any] | None:
    """Lay a Marp page out in Chromium and run MEASURE in it; None (and an error in report) if it could not."""
    probe = html_path.with_name("measure.html")
    probe.write_text(html_path.read_text().replace("</body>", MEASURE + "</body>"))
    try:
        done = _chromium(chromium, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    m = re.search(r'data-deck-measure="([^"]*)"', done.stdout)
    if m is None:
        report.errors.append("could not measure the slides in Chromium:\n" + done.stderr.strip()[-800:])
        return None
    measured: dict[str, Any] = json.loads(unescape(m.group(1)))
    return measured


def check_overflow(html_path: Path, chromium: str, report: Report) -> None:
    """For a page that is not read from a hall (the instructors' handout): only that everything fits."""
    measured = measure(html_path, chromium, report)
    if measured is not None:
        report.errors.extend(p for slide in measured["slides"] for p in overflows(slide))


def check_readability(html_path: Path, chromium: str, report: Report) -> None:
    """Lay the deck out in Chromium and judge every slide (readability())."""
    measured = measure(html_path, chromium, report)
    if measured is None:
        return
    problems = readability(measured)
    report.errors.extend(problems)
    if not problems:
        report.info.append(f"every slide fits, its code is {CODE_MIN_PX}px or more, nothing lies under the "
                           "navigation controls, no heading breaks a word (measured in Chromium)")


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
        report.info.append("screenshots and the readability checks SKIPPED: no Chromium here (Debian: "
                           "`tools/setup-system.sh slides` installs it; elsewhere set CHROME_PATH)")
        return
    check_readability(html_path, chromium, report)
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
