"""`make slides`: expand slides/deck.md, then let Marp turn it into self-contained HTML files.

1. Expand: each `<!-- include: ... -->` becomes the code it names (deck.include), each
   `<!-- machine: ... -->` this machine's numbers (deck.machine), each diagrams/*.svg image a
   data: URI, so the HTML needs no file beside it.
2. Two editions of the same slides: the workshop's (all of them: build/slides/deck.*) and the
   talk's, for a conference (build/slides/talk.*): without the slides whose class is `lab` (the
   blue "your turn" slides) or `workshop` (the ones that only make sense with the labs).
3. Node: `npm ci` in slides/ from package-lock.json, only when node_modules does not match the
   lock already (a stamp file holds the lock's hash).
4. Marp (offline from here on): NAME.html for each edition, and NAME.pdf when Chromium is found
   (CHROME_PATH, or chromium / google-chrome on the PATH); without it, say so and go on.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from deck import include, machine

SVG_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<path>diagrams/[\w.-]+\.svg)\)")
STAMP = ".deck-lock-sha256"   # in node_modules: the hash of the package-lock.json it was made from
NODE_MAJOR = 18               # marp-cli 4 needs Node.js 18 or later
CLASS = re.compile(r"<!--\s*_class:\s*(?P<names>[\w\s-]+?)\s*-->")
WORKSHOP_ONLY = {"lab", "workshop"}   # slide classes the talk's edition leaves out


class BuildError(RuntimeError):
    """The deck cannot be built; the message says why and what to do."""


@dataclass
class Slide:
    number: int                 # 1-based, as the HTML counts them (deck.html#N)
    line: int                   # where it starts in deck.md
    source: str                 # as written in deck.md
    text: str = ""              # expanded
    diagrams: list[str] = field(default_factory=list)   # diagrams/*.svg it shows

    @property
    def classes(self) -> set[str]:
        """Its Marp classes (`<!-- _class: lab -->`)."""
        m = CLASS.search(self.source)
        return set(m.group("names").split()) if m else set()


@dataclass
class Deck:
    front_matter: str
    slides: list[Slide]

    def markdown(self) -> str:
        return "---\n" + self.front_matter + "---\n\n" + "\n\n---\n\n".join(s.text.strip("\n") for s in self.slides) + "\n"

    def talk_only(self) -> Deck:
        """The talk as given at a conference: the same slides without the workshop's (renumbered)."""
        kept = [s for s in self.slides if not s.classes & WORKSHOP_ONLY]
        return Deck(self.front_matter, [replace(s, number=n) for n, s in enumerate(kept, start=1)])


def split(text: str) -> tuple[str, list[tuple[int, str]]]:
    """(front matter, [(first line number, slide text)]): slides are separated by `---` lines
    outside fenced code, as Marp separates them."""
    lines = text.splitlines()
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        raise BuildError("deck.md must start with a front matter block between two '---' lines")
    end = lines.index("---", 1)
    front = "\n".join(lines[1:end]) + "\n"
    slides: list[tuple[int, str]] = []
    current: list[str] = []
    start = end + 2
    fence: str | None = None
    for n, line in enumerate(lines[end + 1:], start=end + 2):
        stripped = line.strip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
        if fence is None and stripped == "---":
            slides.append((start, "\n".join(current)))
            current, start = [], n + 1
            continue
        current.append(line)
    slides.append((start, "\n".join(current)))
    return front, [(line, body) for line, body in slides if body.strip()]


def _svg_uri(root: Path, rel: str) -> str:
    data = (root / "slides" / rel).read_bytes()
    return "data:image/svg+xml;base64," + base64.b64encode(data).decode("ascii")


def load(root: Path, build: Path) -> Deck:
    """Read slides/deck.md and expand every marker; BuildError names the line of the first problem."""
    deck_md = root / "slides" / "deck.md"
    front, parts = split(deck_md.read_text())
    slides: list[Slide] = []
    for number, (first_line, body) in enumerate(parts, start=1):
        slide = Slide(number=number, line=first_line, source=body)
        out: list[str] = []
        for offset, line in enumerate(body.splitlines()):
            where = f"slides/deck.md:{first_line + offset}"
            inc, mach = include.MARKER.match(line.strip()), machine.MARKER.match(line.strip())
            try:
                if inc:
                    out.append(include.expand(include.parse(inc.group("spec")), root))
                elif mach:
                    out.append(machine.expand(mach.group("what"), build))
                else:
                    for m in SVG_IMAGE.finditer(line):
                        if not (root / "slides" / m.group("path")).is_file():
                            raise include.IncludeError(f"slides/{m.group('path')}: no such diagram")
                        slide.diagrams.append(m.group("path"))
                    out.append(SVG_IMAGE.sub(lambda m: f"![{m.group('alt')}]({_svg_uri(root, m.group('path'))})", line))
            except ValueError as err:   # IncludeError, an unknown machine slide, bad JSON
                raise BuildError(f"{where}: {err}") from None
        slide.text = "\n".join(out)
        slides.append(slide)
    return Deck(front_matter=front, slides=slides)


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def node_ready(slides: Path) -> Path:
    """Node.js and Marp installed from the lock file; returns the marp executable."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise BuildError("Node.js and npm are needed for the slides: run `tools/setup-system.sh slides` "
                         "(Debian/Ubuntu), or install Node.js 18+ with npm, then `make slides` again.")
    version = _run([node, "--version"], slides).stdout.strip()
    m = re.match(r"v(\d+)", version)
    if m is None or int(m.group(1)) < NODE_MAJOR:
        raise BuildError(f"Node.js {version or '?'} is too old for Marp: it needs {NODE_MAJOR} or later.")
    lock = hashlib.sha256((slides / "package-lock.json").read_bytes()).hexdigest()
    stamp = slides / "node_modules" / STAMP
    marp = slides / "node_modules" / ".bin" / "marp"
    if marp.exists() and stamp.is_file() and stamp.read_text().strip() == lock:
        return marp
    print("slides: installing Marp from slides/package-lock.json (npm ci)", flush=True)
    done = _run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], slides)
    if done.returncode != 0:
        raise BuildError("npm ci failed in slides/:\n" + (done.stdout + done.stderr).strip())
    stamp.write_text(lock + "\n")
    return marp


def find_chromium() -> str | None:
    """The browser Marp and the screenshot check use, or None."""
    configured = os.environ.get("CHROME_PATH")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def marp(root: Path, source: Path, output: Path, *extra: str, chromium: str | None = None) -> None:
    """Run Marp on source with the deck's config; BuildError with its output when it fails."""
    slides = root / "slides"
    env = dict(os.environ)
    if chromium:
        env["CHROME_PATH"] = chromium
    done = _run([str(node_ready(slides)), "--config-file", str(slides / "marp.config.mjs"), "--no-stdin",
                 *extra, str(source), "-o", str(output)], slides, env)
    if done.returncode != 0 or not output.exists():
        raise BuildError(f"marp failed for {output.name}:\n" + (done.stdout + done.stderr).strip())


@dataclass
class Edition:
    """One deck written to build/slides/: its slides, its HTML and (with Chromium) its PDF."""

    name: str          # "deck" (the workshop's) or "talk"
    deck: Deck
    html: Path
    pdf: Path | None


@dataclass
class Built:
    editions: list[Edition]   # the workshop's first
    seconds: float
    notes: list[str]   # what the presenter should know (no PDF, ...)

    @property
    def workshop(self) -> Edition:
        return self.editions[0]


def _write(root: Path, out: Path, name: str, deck: Deck, chromium: str | None) -> Edition:
    """NAME.md, NAME.html and, when chromium is given, NAME.pdf in out."""
    source = out / f"{name}.md"
    source.write_text(deck.markdown())
    html = out / f"{name}.html"
    marp(root, source, html)
    pdf = None
    if chromium is not None:
        pdf = out / f"{name}.pdf"
        marp(root, source, pdf, "--pdf", "--pdf-notes", chromium=chromium)
    return Edition(name, deck, html, pdf)


def build(root: Path, pdf: bool = True, measured: Path | None = None) -> Built:
    """Expand, install Marp if needed, write the workshop's deck (build/slides/deck.html) and the
    talk's (talk.html), and their PDFs.

    measured: where `make reveal` and `make bench` wrote reveal/ and bench/ (default build/).
    """
    started = time.monotonic()
    out = root / "build" / "slides"
    out.mkdir(parents=True, exist_ok=True)
    deck = load(root, measured or root / "build")
    notes: list[str] = []
    chromium = find_chromium()
    if not pdf:
        notes.append("PDF not asked for")
    elif chromium is None:
        notes.append("no PDF: Chromium was not found (install it, e.g. `tools/setup-system.sh slides` "
                     "on Debian, or set CHROME_PATH)")
    pdf_with = chromium if pdf else None
    editions = [_write(root, out, "deck", deck, pdf_with), _write(root, out, "talk", deck.talk_only(), pdf_with)]
    return Built(editions, time.monotonic() - started, notes)
