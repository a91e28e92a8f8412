"""What the instructors' kit names must exist: so that a renamed target, file or test breaks `make test`.

The kit (docs/instructors/*.md, the handout included) tells an instructor to type commands and open
files. Read as code (a `code span` or a fenced block), it names:

- make targets: `make lab3 T=test_py`, `make reveal REPEAT=3`: each must be a rule of the Makefile
  (`labN` through the `lab%` rule, with a labs/0N-*/ folder);
- repository paths: labs/..., py/..., tools/..., README.md ...; a `*` is a glob that must match;
  build/ is left out (it is made, not kept);
- grader tests: a `test_...` name must begin the name of a test function or test module of a lab's
  grader or of py/tests (so `make lab3 T=test_py` and `test_caveat1_*` count);
- mutants: a `NAME.patch` must be in some labs/*/tests/mutants/;

and, in its prose, hints: "Hint `key`" or "Hints `a`, `b`" must be sections of a lab's hints.md;
and the slide titles of a table column headed "from the slide" ("quoted") must be in slides/deck.md.
"""
from __future__ import annotations

import re
from pathlib import Path

KIT = Path("docs/instructors")
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`|<code>(.*?)</code>")
MAKE = re.compile(r"(?<![\w-])make ([a-z][\w-]*)")
TOP = r"README\.md|Makefile|requirements\.txt|pytest\.ini|mypy\.ini"
PATH = re.compile(rf"(?<![\w./*-])(?:(?:labs|py|c|notebooks|docs|tools|slides)/[\w./*-]*[\w/*]|(?:{TOP})(?![\w.]))")
TEST = re.compile(r"(?<![\w/.])(test_[a-z0-9_]+)")
PATCH = re.compile(r"(?<![\w/.*-])([\w-]+\.patch)\b")
HINTS = re.compile(r"\bHints? ((?:`[\w-]+`(?:,\s*|\s+and\s+)?)+)")
RULE = re.compile(r"^([A-Za-z][\w%-]*(?:[ \t]+[A-Za-z][\w%-]*)*)[ \t]*:(?![=:])", re.M)


def kit_pages(root: Path) -> list[Path]:
    return sorted((root / KIT).glob("*.md"))


def code_of(text: str) -> list[str]:
    """The parts of a Markdown page written as code: fenced blocks and inline spans (HTML <code> too)."""
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    spans = [a or b for a, b in SPAN.findall(prose)]
    return blocks + spans


def make_rules(root: Path) -> set[str]:
    """Every target the Makefile has a rule for (`asan ubsan tsan:` gives three; `lab%` stays a pattern)."""
    text = (root / "Makefile").read_text()
    return {name for m in RULE.finditer(text) for name in m.group(1).split()}


def lab_exists(root: Path, number: str) -> bool:
    return any((root / "labs").glob(f"{int(number):02d}-*/"))


def test_names(root: Path) -> set[str]:
    """The test functions and test modules of the labs' graders and of py/."""
    names: set[str] = set()
    for path in [*(root / "labs").glob("*/tests/*.py"), *(root / "py").glob("*/tests/*.py"),
                 *(root / "py" / "tests").glob("*.py")]:
        names.update(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))
        if path.stem.startswith("test_"):
            names.add(path.stem)
    return names


def hint_keys(root: Path) -> set[str]:
    """The sections of every lab's hints.md (`## key: title`)."""
    return {key for path in (root / "labs").glob("*/hints.md")
            for key in re.findall(r"^## ([\w-]+):", path.read_text(), re.M)}


def mutant_names(root: Path) -> set[str]:
    return {path.name for path in (root / "labs").glob("*/tests/mutants/*.patch")}


def slide_titles(text: str) -> list[str]:
    """The quoted titles in the column headed "from the slide" of the page's Markdown tables."""
    titles: list[str] = []
    column: int | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = next((i for i, c in enumerate(cells) if c.lower() == "from the slide"), None)
        elif column < len(cells) and not set(cells[column]) <= set("-: "):
            titles += re.findall(r'"([^"]+)"', cells[column])
    return titles


def problems_of(page: Path, root: Path, rules: set[str], tests: set[str], hints: set[str],
                mutants: set[str]) -> list[str]:
    """What `page` names that does not exist, one sentence each."""
    where = page.relative_to(root)
    text = page.read_text()
    found: list[str] = []
    deck = (root / "slides" / "deck.md").read_text()
    for title in slide_titles(text):
        if title not in deck:
            found.append(f'{where}: "{title}": no slide of slides/deck.md says so')
    for listed in HINTS.findall(FENCE.sub("", text)):
        for key in re.findall(r"`([\w-]+)`", listed):
            if key not in hints:
                found.append(f"{where}: hint `{key}`: no `## {key}:` section in labs/*/hints.md")
    for code in code_of(text):
        for target in MAKE.findall(code):
            lab = re.fullmatch(r"lab(\d+|N)", target)   # labN: the rule itself
            if lab and "lab%" in rules and (lab.group(1) == "N" or lab_exists(root, lab.group(1))):
                continue
            if target not in rules:
                found.append(f"{where}: `make {target}`: the Makefile has no rule {target}")
        for ref in PATH.findall(code):
            ref = ref.rstrip("/.")
            if not (any(root.glob(ref)) if "*" in ref else (root / ref).exists()):
                found.append(f"{where}: {ref} does not exist")
        for name in TEST.findall(code):
            if not any(t.startswith(name) for t in tests):
                found.append(f"{where}: {name}: no test in labs/*/tests or py/tests begins so")
        for patch in PATCH.findall(code):
            if patch not in mutants:
                found.append(f"{where}: {patch}: no such mutant in labs/*/tests/mutants/")
    return list(dict.fromkeys(found))


def problems(root: Path) -> list[str]:
    """Everything the kit names that does not exist (an empty list: the kit is true to the repository)."""
    pages = kit_pages(root)
    if not pages:
        return [f"{KIT}/ has no pages"]
    rules, tests, hints, mutants = make_rules(root), test_names(root), hint_keys(root), mutant_names(root)
    return [p for page in pages for p in problems_of(page, root, rules, tests, hints, mutants)]
