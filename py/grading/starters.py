"""Write each lab's starter files from the reference code (one source of truth).

The reference in c/ and py/ marks every piece a learner writes himself:

    C                                        Python
    /* BEGIN SOLUTION lab1                   # BEGIN SOLUTION lab2
     * TODO: what to write, in words.        # TODO: what to write, in words.
     * STUB: return -ENOSYS;                 # STUB: raise NotImplementedError("lab2: f")
     */                                      ...the reference code...
    ...the reference code...                 # END SOLUTION
    /* END SOLUTION */

In the starter the block becomes its TODO lines (still comments, prefixed with
the lab) followed by its STUB lines (now code), at the BEGIN line's indentation.
A reference reader sees the TODO as the comment that explains the code below it.

Usage:
    python -m grading.starters write          # (re)write labs/*/ from the reference (make starters);
                                              # a file changed since git's commit is refused (--force)
    python -m grading.starters check          # fail if labs/*/ differ from the reference
    python -m grading.starters reset 3        # lab 3 starts over (make reset LAB=3); yours saved first
    python -m grading.starters write --into DIR   # pristine copies, for `make test`

Nothing a learner wrote is lost: what is overwritten is first copied under build/backup/.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from grading import cli
from grading.labs import Lab, all_labs, find_lab
from paths import ROOT


class MarkerError(ValueError):
    """A reference file whose solution markers are malformed."""


@dataclass(frozen=True)
class Syntax:
    """How one language spells the markers."""

    begin: re.Pattern[str]      # the BEGIN line; group 1 = indentation, group 2 = lab
    header_line: re.Pattern[str]  # a line inside the BEGIN comment; group 1 = the text
    header_end: re.Pattern[str] | None  # closes the BEGIN comment (C); None in Python
    end: re.Pattern[str]
    todo_first: str             # the first TODO line in the starter
    todo_more: str              # each further TODO line
    todo_close: str             # appended to the last TODO line
    banner: str                 # first line of a generated starter


C_SYNTAX = Syntax(
    begin=re.compile(r"^(\s*)/\* BEGIN SOLUTION (lab\d+)\s*$"),
    header_line=re.compile(r"^\s*\* ?(.*)$"),
    header_end=re.compile(r"^\s*\*/\s*$"),
    end=re.compile(r"^\s*/\* END SOLUTION \*/\s*$"),
    todo_first="{indent}/* TODO({lab}): {text}",
    todo_more="{indent} * {text}",
    todo_close=" */",
    banner="/* Your copy of {ref}: edit it, then run `make {lab}`. (Generated; see docs/ARCHITECTURE.md.) */",
)

PY_SYNTAX = Syntax(
    begin=re.compile(r"^(\s*)# BEGIN SOLUTION (lab\d+)\s*$"),
    header_line=re.compile(r"^\s*# (TODO:.*|STUB:.*|\s+\S.*)$"),  # continuation: "#   more"
    header_end=None,
    end=re.compile(r"^\s*# END SOLUTION\s*$"),
    todo_first="{indent}# TODO({lab}): {text}",
    todo_more="{indent}#   {text}",
    todo_close="",
    banner="# Your copy of {ref}: edit it, then run `make {lab}`. (Generated; see docs/ARCHITECTURE.md.)",
)


def syntax_for(path: Path) -> Syntax:
    if path.suffix in (".c", ".h"):
        return C_SYNTAX
    if path.suffix == ".py":
        return PY_SYNTAX
    raise MarkerError(f"{path}: no marker syntax for '{path.suffix}' files")


def _parse_header(lines: list[str], i: int, syntax: Syntax, where: str) -> tuple[list[str], list[str], int]:
    """Read the TODO/STUB lines after a BEGIN line; return (todo, stub, next index)."""
    todo: list[str] = []
    stub: list[str] = []
    current: list[str] | None = None
    while i < len(lines):
        line = lines[i]
        if syntax.header_end is not None and syntax.header_end.match(line):
            return todo, stub, i + 1
        m = syntax.header_line.match(line)
        if m is None:
            if syntax.header_end is not None:
                raise MarkerError(f"{where}: the BEGIN comment is not closed with ' */'")
            return todo, stub, i
        text = m.group(1).rstrip()
        if text.startswith("TODO:"):
            current = todo
            text = text[len("TODO:"):].strip()
        elif text.startswith("STUB:"):
            current = stub
            text = text[len("STUB:"):].strip()
        elif current is None:
            if syntax.header_end is None:   # a plain comment: the header is over
                return todo, stub, i
            raise MarkerError(f"{where}: header lines must start with 'TODO:' or 'STUB:'")
        else:
            text = text.strip()
        current.append(text)
        i += 1
    raise MarkerError(f"{where}: file ends inside a BEGIN SOLUTION header")


def _todo_comment(syntax: Syntax, indent: str, lab: str, todo: list[str]) -> list[str]:
    """The TODO lines as one comment: the first names the lab, the others continue it."""
    lines = [(syntax.todo_first if i == 0 else syntax.todo_more).format(indent=indent, lab=lab, text=text).rstrip()
             for i, text in enumerate(todo)]
    if lines:
        lines[-1] += syntax.todo_close
    return lines


def make_starter(text: str, path: Path, lab: str) -> str:
    """Return the starter version of one reference file for `lab`.

    Raises MarkerError when markers are unbalanced, nested, or name another lab
    (one reference file belongs to one lab, so a later lab's solutions never leak
    into an earlier lab's starter and vice versa).
    """
    syntax = syntax_for(path)
    lines = text.splitlines()
    out: list[str] = []
    blocks = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        where = f"{path}:{i + 1}"
        if syntax.end.match(line):
            raise MarkerError(f"{where}: END SOLUTION without BEGIN")
        m = syntax.begin.match(line)
        if m is None:
            out.append(line)
            i += 1
            continue
        indent, block_lab = m.group(1), m.group(2)
        if block_lab != lab:
            raise MarkerError(f"{where}: block is for {block_lab}, but this file belongs to {lab}")
        todo, stub, i = _parse_header(lines, i + 1, syntax, where)
        if not todo and not stub:
            raise MarkerError(f"{where}: a solution block needs a TODO or a STUB line")
        # Skip the reference code up to the END marker.
        while i < len(lines) and not syntax.end.match(lines[i]):
            if syntax.begin.match(lines[i]):
                raise MarkerError(f"{path}:{i + 1}: nested BEGIN SOLUTION")
            i += 1
        if i == len(lines):
            raise MarkerError(f"{where}: BEGIN SOLUTION without END SOLUTION")
        i += 1
        out.extend(_todo_comment(syntax, indent, lab, todo))
        out.extend(indent + s for s in stub)
        blocks += 1
    if blocks == 0:
        raise MarkerError(f"{path}: no BEGIN SOLUTION block, so there is nothing for the learner to write")
    banner = syntax.banner.format(ref=path.as_posix(), lab=lab)
    # Keep a shebang on the first line, where the kernel looks for it.
    if out and out[0].startswith("#!"):
        return "\n".join([out[0], banner, *out[1:]]) + "\n"
    return "\n".join([banner, *out]) + "\n"


def starters_of(lab: Lab, root: Path) -> dict[Path, str]:
    """Map each starter path (relative to the repo) to its generated text."""
    result: dict[Path, str] = {}
    for ref, starter in lab.files:
        text = (root / ref).read_text()
        result[lab.dir.relative_to(root) / starter] = make_starter(text, ref, lab.name)
    return result


def _committed_text(root: Path, rel: Path) -> str | None:
    """The text git has staged for rel (so a learner's unstaged edits are ignored).

    Outside a git checkout, the working-tree file stands in.
    """
    proc = subprocess.run(["git", "-C", str(root), "show", f":{rel.as_posix()}"],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return proc.stdout
    inside_git = subprocess.run(["git", "-C", str(root), "rev-parse", "--git-dir"],
                                capture_output=True).returncode == 0
    if inside_git:
        return None  # not added to git yet
    path = root / rel
    return path.read_text() if path.exists() else None


def backup(root: Path, rel: Path, why: str) -> Path:
    """Copy the working file rel under build/backup/WHY-TIME/ before it is overwritten."""
    folder = root / "build" / "backup" / f"{why}-{time.strftime('%Y%m%d-%H%M%S')}"
    target = folder / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / rel, target)
    return folder


def write(root: Path, labs: list[Lab], force: bool, into: Path | None = None) -> int:
    """Write the labs' starters. A working file that differs from what git has committed is a
    learner's work: refused, unless force, and then saved under build/backup/ first."""
    refused: list[Path] = []
    saved_in: set[Path] = set()
    for lab in labs:
        for rel, text in starters_of(lab, root).items():
            target = (into or root) / rel
            current = target.read_text() if target.exists() else None
            if current == text:
                continue
            if into is None and current is not None and current != _committed_text(root, rel):
                if not force:
                    refused.append(rel)
                    continue
                saved_in.add(backup(root, rel, "starters"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            if into is None:
                print(f"wrote {rel}")
    for folder in saved_in:
        print(f"your versions of the files replaced are in {folder.relative_to(root)}/")
    if refused:
        print("starters: NOT overwritten, because they differ from what git has committed (a learner's work?):",
              file=sys.stderr)
        for rel in refused:
            print(f"  {rel}", file=sys.stderr)
        print("To start one lab over: make reset LAB=N (your version is saved first). A maintainer after a change\n"
              "to the reference: commit or stash these first, or FORCE=1 (what is replaced is saved under build/backup/).",
              file=sys.stderr)
        return 1
    return 0


def reset(root: Path, lab: Lab) -> int:
    """Start one lab over: its files become the starters again; the learner's are saved first."""
    changed = [rel for rel, text in starters_of(lab, root).items()
               if (root / rel).exists() and (root / rel).read_text() != text]
    saved = {backup(root, rel, f"{lab.name}-reset") for rel in changed}
    for rel, text in starters_of(lab, root).items():
        (root / rel).write_text(text)
    print(f"{lab.name} starts over: {len(changed)} of its files were restored to the starter."
          + "".join(f" Your versions are in {folder.relative_to(root)}/." for folder in saved))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.starters", __doc__)
    parser.add_argument("action", choices=["write", "check", "reset"])
    parser.add_argument("lab", nargs="?", help="reset: the lab to start over")
    parser.add_argument("--into", type=Path, help="write under this directory instead of the repo")
    parser.add_argument("--force", action="store_true", help="write: overwrite changed files (saved first)")
    args = parser.parse_args(argv)
    root = ROOT
    try:
        if args.action == "reset":
            if not args.lab:
                parser.error("say which lab: reset N")
            return reset(root, find_lab(args.lab, root))
        if args.action == "write":
            return write(root, all_labs(root), args.force, args.into)
        stale = [rel for lab in all_labs(root) for rel, text in starters_of(lab, root).items()
                 if _committed_text(root, rel) != text]
    except MarkerError as err:
        print(f"starters: {err}", file=sys.stderr)
        return 1
    if stale:
        print("starters: these committed starter files differ from what the reference generates:", file=sys.stderr)
        for rel in stale:
            print(f"  {rel}", file=sys.stderr)
        print("Run `make starters` and commit the result (a learner's own edits are not checked:"
              " only what git has staged is compared).", file=sys.stderr)
        return 1
    print("starters: every lab's committed starter files match the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
