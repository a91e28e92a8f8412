"""Code on a slide comes from a file of the repo: the include markers of slides/deck.md.

    <!-- include: py/miniloop/loop.py#EventLoop.sock_recv -->
    <!-- include: c/kaio/ka_raw.c#raw_submit from="for (int i" -->
    <!-- include: labs/01-nonblocking/talk/aiofile_as_printed.py#L5-18 -->
    <!-- include: py/reveal/probes.py from="CAIO_BACKENDS = {" to="}" -->

The part after `#` picks a region of the file:
  Name, Class.method   a Python function or class (found with ast), or a C function or
                       struct (its definition, from the line naming it to the closing brace);
  L5-18                lines 5 to 18 (as the file numbers them);
  nothing              the whole file.
Options narrow it down: from="text" starts at the first line containing text, to="text"
stops at the first line after that containing text; `doc` keeps a Python docstring (dropped
by default); max=N allows N lines instead of MAX_LINES, width=N lines of N characters instead of
MAX_WIDTH (for a slide whose class makes its code smaller); lang=x names the fence's language.

The solution markers of the reference (BEGIN SOLUTION, the TODO/STUB header, END SOLUTION)
are left out, the region is dedented, and it becomes a fenced code block followed by a
caption naming its source. A file or region that is not there, or a sample too long or too
wide for a slide, is an IncludeError: the deck cannot show code the repo does not have.
"""
from __future__ import annotations

import ast
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

from grading.starters import syntax_for

MAX_LINES = 16   # lines of code a slide shows legibly at the deck's code size (20px)
MAX_WIDTH = 92   # characters per line that fit the slide's width at that size

MARKER = re.compile(r"^<!--\s*include:\s*(?P<spec>.*?)\s*-->\s*$")
LANGUAGES = {".py": "python", ".c": "c", ".h": "c", ".sh": "bash", ".toml": "toml", ".mjs": "js", ".js": "js"}


class IncludeError(ValueError):
    """An include marker that cannot be expanded; the message says where and why."""


@dataclass(frozen=True)
class Include:
    """One parsed include marker."""

    path: str                # relative to the repo
    selector: str            # "" (whole file), "L5-18", "Name" or "Class.method"
    start: str | None        # from="..."
    stop: str | None         # to="..."
    keep_doc: bool
    max_lines: int
    max_width: int
    lang: str

    @property
    def label(self) -> str:
        """The caption under the code: where it comes from."""
        where = self.path + (f" · {self.selector}" if self.selector and not self.selector.startswith("L") else "")
        return where


def parse(spec: str) -> Include:
    """Parse the text of a marker (after `include:`); IncludeError when it is malformed."""
    try:
        words = shlex.split(spec)
    except ValueError as err:
        raise IncludeError(f"cannot parse {spec!r}: {err}") from None
    if not words:
        raise IncludeError("an include needs a path")
    path, _, selector = words[0].partition("#")
    options: dict[str, str] = {}
    flags: set[str] = set()
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq:
            options[key] = value
        else:
            flags.add(key)
    unknown = (set(options) - {"from", "to", "max", "width", "lang"}) | (flags - {"doc"})
    if unknown:
        raise IncludeError(f"unknown option(s) {', '.join(sorted(unknown))} in {spec!r}")
    limits = {key: options.get(key, str(default)) for key, default in (("max", MAX_LINES), ("width", MAX_WIDTH))}
    for key, value in limits.items():
        if not value.isdigit():
            raise IncludeError(f"{key}= wants a number, not {value!r}")
    return Include(path=path, selector=selector, start=options.get("from"), stop=options.get("to"),
                   keep_doc="doc" in flags, max_lines=int(limits["max"]), max_width=int(limits["width"]),
                   lang=options.get("lang", LANGUAGES.get(Path(path).suffix, "text")))


def strip_markers(lines: list[str], path: Path) -> list[str]:
    """The lines without solution markers: the code a reader of the reference sees."""
    try:
        syntax = syntax_for(path)
    except ValueError:
        return lines   # no markers in this kind of file
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if syntax.end.match(line):
            continue
        if not syntax.begin.match(line):
            out.append(line)
            continue
        # Skip the header: TODO/STUB lines (Python), or up to the comment's close (C).
        while i < len(lines):
            if syntax.header_end is not None:
                i += 1
                if syntax.header_end.match(lines[i - 1]):
                    break
            elif syntax.header_line.match(lines[i]):
                i += 1
            else:
                break
    return out


def _python_region(text: str, name: str, keep_doc: bool) -> tuple[int, int, set[int]]:
    """(first line, last line, docstring lines) of the def/class `name` ("A.b" for a method); 1-based."""
    scope: list[ast.stmt] = ast.parse(text).body
    node: ast.stmt | None = None
    for part in name.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise IncludeError(f"no function or class named {name!r}")
        scope = node.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []
    assert node is not None and node.end_lineno is not None
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    doc: set[int] = set()
    body = getattr(node, "body", [])
    if not keep_doc and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str) and body[0].end_lineno is not None:
        doc = set(range(body[0].lineno, body[0].end_lineno + 1))
    return first, node.end_lineno, doc


def _c_region(lines: list[str], name: str) -> tuple[int, int]:
    """(first line, last line) of the C function or struct `name`, 1-based: a definition starts at
    column 0 and ends at the first line that is a lone `}` or `};` there."""
    head = re.compile(rf"^(?:[A-Za-z_][\w \t*]*[\s*])?{re.escape(name)}\s*\(|^(?:struct|enum|union)\s+{re.escape(name)}\s*\{{")
    for i, line in enumerate(lines):
        if head.match(line) and not line.rstrip().endswith(";"):
            for j in range(i, len(lines)):
                if lines[j].rstrip() in ("}", "};"):
                    return i + 1, j + 1
            raise IncludeError(f"{name!r} has no closing brace at column 0")
    raise IncludeError(f"no C function or struct named {name!r} defined at column 0")


def _narrow(lines: list[str], start: str | None, stop: str | None) -> list[str]:
    """Lines from the first containing `start` to the first after it containing `stop`."""
    first = 0
    if start is not None:
        first = next((i for i, line in enumerate(lines) if start in line), -1)
        if first < 0:
            raise IncludeError(f"no line contains from={start!r}")
    last = len(lines) - 1
    if stop is not None:
        last = next((i for i in range(first, len(lines)) if stop in lines[i]), -1)
        if last < 0:
            raise IncludeError(f"no line at or after the start contains to={stop!r}")
    return lines[first:last + 1]


def extract(inc: Include, root: Path) -> list[str]:
    """The lines of code the include shows (no markers, dedented, no blank lines around)."""
    path = root / inc.path
    if not path.is_file():
        raise IncludeError(f"{inc.path}: no such file in the repository")
    text = path.read_text()
    lines = text.splitlines()
    selector = inc.selector
    if re.fullmatch(r"L\d+-\d+", selector):
        a, b = (int(n) for n in selector[1:].split("-"))
        if not 1 <= a <= b <= len(lines):
            raise IncludeError(f"{inc.path} has {len(lines)} lines: {selector} is out of range")
        region = strip_markers(lines[a - 1:b], path)
    elif selector:
        try:
            if path.suffix == ".py":
                stripped = strip_markers(lines, path)
                a, b, doc = _python_region("\n".join(stripped) + "\n", selector, inc.keep_doc)
                region = [line for n, line in enumerate(stripped[a - 1:b], start=a) if n not in doc]
            else:
                a, b = _c_region(lines, selector)
                region = strip_markers(lines[a - 1:b], path)
        except IncludeError as err:
            raise IncludeError(f"{inc.path}: {err}") from None
    else:
        region = strip_markers(lines, path)
    try:
        region = _narrow(region, inc.start, inc.stop)
    except IncludeError as err:
        raise IncludeError(f"{inc.path}#{selector}: {err}") from None
    code = textwrap.dedent("\n".join(region)).strip("\n").splitlines()
    if len(code) > inc.max_lines:
        raise IncludeError(f"{inc.path}#{selector}: {len(code)} lines, more than a slide shows ({inc.max_lines}): "
                           "narrow it with from=/to= (or say max=N)")
    wide = [line for line in code if len(line) > inc.max_width]
    if wide:
        raise IncludeError(f"{inc.path}#{selector}: a line of {len(wide[0])} characters is wider than a slide "
                           f"({inc.max_width}): {wide[0].strip()[:60]}...")
    return code


def expand(inc: Include, root: Path) -> str:
    """The Markdown the marker becomes: a fenced block and its caption."""
    code = extract(inc, root)
    fence = "````" if any(line.lstrip().startswith("```") for line in code) else "```"
    return "\n".join([f"{fence}{inc.lang}", *code, fence, f'<div class="src">{inc.label}</div>'])
