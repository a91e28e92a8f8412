"""Code on a slide comes from a file of the repo: the include markers of slides/deck.md.

    <!-- include: py/miniloop/loop.py#EventLoop._run_once -->
    <!-- include: c/loadgen/el.c#run_until_all_done from="for (int i" to="}" -->
    <!-- include: labs/01-nonblocking/talk/aiofile_as_printed.py#L5-18 -->
    <!-- include: c/kaio/ka_raw.c#raw_submit starter -->

The part after `#` picks a region of the file:
  Name, Class.method   a Python function or class (found with ast), or a C function or
                       struct (its definition, from the line naming it to the closing brace);
  L5-18                lines 5 to 18 (as the file numbers them);
  nothing              the whole file.
Options narrow it down: from="text" starts at the first line containing text, to="text"
stops at the first line after that containing text; `doc` keeps a Python docstring (dropped
by default); max=N allows N lines instead of MAX_LINES, width=N lines of N characters instead of
MAX_WIDTH (the deck check still measures whether they fit); lang=x names the fence's language;
`starter` shows what the lab's starter has there (see below).

The solution markers of the reference (BEGIN SOLUTION, the TODO/STUB header, END SOLUTION)
are left out, the region is dedented, and it becomes a fenced code block followed by a
caption naming its source. A file or region that is not there, or a sample too long or too
wide for a slide, is an IncludeError: the deck cannot show code the repo does not have.

A slide never hands out a lab's answer: the talk comes before the labs, so a region with a
line of a solution block (the code between BEGIN and END SOLUTION) is an IncludeError too.
Show the idea instead: the option `starter` shows the region as the lab's starter has it (the
block's TODO text and stub, generated from the reference like `make starters` does, so a
learner's edits never reach the deck), or include a peer's code, or the lines around the block.
"""
from __future__ import annotations

import ast
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

from grading.labs import all_labs
from grading.starters import make_starter, syntax_for

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
    starter: bool            # show the lab's starter version of the region
    max_lines: int
    max_width: int
    lang: str

    def label(self, root: Path) -> str:
        """The caption under the code: where it comes from (the learner's starter file for `starter`)."""
        name = f" · {self.selector}" if self.selector and not self.selector.startswith("L") else ""
        if not self.starter:
            return self.path + name
        starter = starter_file(self.path, root)
        return f"{starter or self.path}{name} (the starter)"


@dataclass(frozen=True)
class Line:
    """A line of a file as a reader of the reference sees it."""

    number: int              # 1-based, in the text it comes from
    text: str
    solution: str | None     # the lab whose solution block holds it ("lab2"), or None


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
    unknown = (set(options) - {"from", "to", "max", "width", "lang"}) | (flags - {"doc", "starter"})
    if unknown:
        raise IncludeError(f"unknown option(s) {', '.join(sorted(unknown))} in {spec!r}")
    limits = {key: options.get(key, str(default)) for key, default in (("max", MAX_LINES), ("width", MAX_WIDTH))}
    for key, value in limits.items():
        if not value.isdigit():
            raise IncludeError(f"{key}= wants a number, not {value!r}")
    return Include(path=path, selector=selector, start=options.get("from"), stop=options.get("to"),
                   keep_doc="doc" in flags, starter="starter" in flags, max_lines=int(limits["max"]),
                   max_width=int(limits["width"]), lang=options.get("lang", LANGUAGES.get(Path(path).suffix, "text")))


def annotate(lines: list[str], path: Path) -> list[Line]:
    """The lines without solution markers (the BEGIN line, its TODO/STUB header, the END line), each
    with its number and the lab whose solution block it is in: the code a reader of the reference sees."""
    try:
        syntax = syntax_for(path)
    except ValueError:
        return [Line(n, text, None) for n, text in enumerate(lines, start=1)]   # no markers in this kind of file
    out: list[Line] = []
    lab: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if syntax.end.match(line):
            lab = None
            continue
        begin = syntax.begin.match(line)
        if begin is None:
            out.append(Line(i, line, lab))
            continue
        lab = begin.group(2)
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


def starter_file(ref: str, root: Path) -> str | None:
    """labs/NN-topic/NAME: the learner's copy of the reference file ref, or None if no lab has it."""
    for lab in all_labs(root):
        for lab_ref, starter in lab.files:
            if lab_ref.as_posix() == ref:
                return (lab.dir / starter).relative_to(root.resolve()).as_posix()
    return None


def starter_text(text: str, path: Path) -> str:
    """The file as its lab's starter has it, generated from the reference (never the learner's copy)."""
    syntax = syntax_for(path)   # MarkerError (a ValueError) for a kind of file that has no markers
    labs = [m.group(2) for m in map(syntax.begin.match, text.splitlines()) if m]
    if not labs:
        raise IncludeError("`starter` asks for a lab's starter, but this file has no solution block")
    return make_starter(text, path, labs[0])


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


def _narrow(lines: list[Line], start: str | None, stop: str | None) -> list[Line]:
    """Lines from the first containing `start` to the first after it containing `stop`."""
    first = 0
    if start is not None:
        first = next((i for i, line in enumerate(lines) if start in line.text), -1)
        if first < 0:
            raise IncludeError(f"no line contains from={start!r}")
    last = len(lines) - 1
    if stop is not None:
        last = next((i for i in range(first, len(lines)) if stop in lines[i].text), -1)
        if last < 0:
            raise IncludeError(f"no line at or after the start contains to={stop!r}")
    return lines[first:last + 1]


def _select(inc: Include, lines: list[str], path: Path) -> list[Line]:
    """The lines the selector names (markers left out)."""
    selector = inc.selector
    if re.fullmatch(r"L\d+-\d+", selector):
        a, b = (int(n) for n in selector[1:].split("-"))
        if not 1 <= a <= b <= len(lines):
            raise IncludeError(f"{inc.path} has {len(lines)} lines: {selector} is out of range")
        return [line for line in annotate(lines, path) if a <= line.number <= b]
    if not selector:
        return annotate(lines, path)
    try:
        if path.suffix == ".py":
            seen = annotate(lines, path)
            a, b, doc = _python_region("\n".join(line.text for line in seen) + "\n", selector, inc.keep_doc)
            return [line for n, line in enumerate(seen[a - 1:b], start=a) if n not in doc]
        a, b = _c_region(lines, selector)
        return [line for line in annotate(lines, path) if a <= line.number <= b]
    except IncludeError as err:
        raise IncludeError(f"{inc.path}: {err}") from None


def _refuse_answers(inc: Include, region: list[Line]) -> None:
    """IncludeError if the region shows a line of a lab's solution block: the deck must not hand it out."""
    answer = [line for line in region if line.solution and line.text.strip()]
    if answer:
        lab = answer[0].solution
        raise IncludeError(f"{inc.path}#{inc.selector}: lines {answer[0].number}-{answer[-1].number} are {lab}'s "
                           "solution (inside BEGIN/END SOLUTION): a slide must not hand out a lab's answer. Show the "
                           "idea instead: the starter's shape (add `starter`), a peer's code, or the lines around "
                           "the block")


def extract(inc: Include, root: Path) -> list[str]:
    """The lines of code the include shows (no markers, dedented, no blank lines around)."""
    path = root / inc.path
    if not path.is_file():
        raise IncludeError(f"{inc.path}: no such file in the repository")
    text = path.read_text()
    if inc.starter:
        try:
            text = starter_text(text, path)
        except ValueError as err:   # IncludeError, or malformed markers (MarkerError)
            raise IncludeError(f"{inc.path}: {err}") from None
    region = _select(inc, text.splitlines(), path)
    try:
        region = _narrow(region, inc.start, inc.stop)
    except IncludeError as err:
        raise IncludeError(f"{inc.path}#{inc.selector}: {err}") from None
    _refuse_answers(inc, region)
    code = textwrap.dedent("\n".join(line.text for line in region)).strip("\n").splitlines()
    if len(code) > inc.max_lines:
        raise IncludeError(f"{inc.path}#{inc.selector}: {len(code)} lines, more than a slide shows ({inc.max_lines}): "
                           "narrow it with from=/to= (or say max=N)")
    wide = [line for line in code if len(line) > inc.max_width]
    if wide:
        raise IncludeError(f"{inc.path}#{inc.selector}: a line of {len(wide[0])} characters is wider than a slide "
                           f"({inc.max_width}): {wide[0].strip()[:60]}...")
    return code


def expand(inc: Include, root: Path) -> str:
    """The Markdown the marker becomes: a fenced block and its caption."""
    code = extract(inc, root)
    fence = "````" if any(line.lstrip().startswith("```") for line in code) else "```"
    return "\n".join([f"{fence}{inc.lang}", *code, fence, f'<div class="src">{inc.label(root)}</div>'])
