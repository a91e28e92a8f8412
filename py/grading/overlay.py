"""Build an implementation root: the reference c/ and py/, with one lab's files swapped in.

A grader always tests a whole tree, so a lab's files are graded on top of the
*reference* of every other lab: a learner who skipped lab 2 can still do lab 3.

    python -m grading.overlay --lab 2 --learner --into build/grade/lab2   # the learner's files
    python -m grading.overlay --lab 2 --starter --into build/prove/lab2   # pristine starters

The tree is then built like the reference: `make -C ROOT/c O=ROOT/build/bin`, and every
C extension under py/ (a package with a setup.py: kernaio) in place, as `make setup` does
for the checkout. An extension is copied with the tree and rebuilt only when one of its
files is newer than it: a lab that swaps in the extension's C gets it recompiled.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from grading import cli
from grading.labs import Lab, find_lab
from grading.starters import make_starter
from paths import ROOT

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.o", "build", "*.egg-info")


def make_overlay(lab: Lab, into: Path, source: str, root: Path | None = None) -> Path:
    """Write ROOT/{c,py} into `into` with lab's files taken from `source`.

    source: "learner" (the files in the lab folder), "starter" (generated afresh from
    the reference, as a learner first gets them) or "reference" (none swapped: the tree a
    known wrong solution is patched into, grading.mutants). Returns `into`.
    """
    root = root or ROOT
    for part in ("c", "py"):
        target = into / part
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(root / part, target, ignore=IGNORED)
    if source == "reference":
        return into
    for ref, starter in lab.files:
        if source == "learner":
            text = (lab.dir / starter).read_text()
        elif source == "starter":
            text = make_starter((root / ref).read_text(), ref, lab.name)
        else:
            raise ValueError(f"unknown overlay source {source!r}")
        (into / ref).write_text(text)
    return into


def build(impl_root: Path, jobs: int = 2) -> subprocess.CompletedProcess[str]:
    """Compile the C code of an implementation root into IMPL/build/bin, then its Python
    C extensions in place; output captured. The first failure is the result."""
    result = subprocess.run(["make", "-s", f"-j{jobs}", "-C", str(impl_root / "c"),
                             f"O={impl_root / 'build' / 'bin'}"], capture_output=True, text=True)
    for setup in sorted((impl_root / "py").glob("*/setup.py")):
        if result.returncode != 0:
            break
        if extension_is_stale(setup.parent):
            result = build_extension(setup.parent, impl_root / "build" / f"ext-{setup.parent.name}")
    return result


def extension_is_stale(package: Path) -> bool:
    """True if package has no compiled extension, or a source newer than it (make's rule)."""
    built = list(package.glob("*.so"))
    if not built:
        return True
    sources = [package / "setup.py", *package.glob("src/*.[ch]")]
    return max(p.stat().st_mtime for p in sources) > min(p.stat().st_mtime for p in built)


def build_extension(package: Path, temp: Path) -> subprocess.CompletedProcess[str]:
    """`python setup.py build_ext --inplace` in package (the compiler names src/... paths)."""
    return subprocess.run([sys.executable, "setup.py", "--quiet", "build_ext", "--inplace",
                           "--build-temp", str(temp), "--build-lib", str(temp / "lib")],
                          cwd=package, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.overlay", __doc__)
    parser.add_argument("--lab", required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--learner", action="store_const", const="learner", dest="source")
    which.add_argument("--starter", action="store_const", const="starter", dest="source")
    parser.add_argument("--into", type=Path, required=True)
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args(argv)
    into = make_overlay(find_lab(args.lab), args.into.resolve(), args.source)
    if not args.no_build:
        result = build(into)
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            return 1
    print(into)
    return 0


if __name__ == "__main__":
    sys.exit(main())
