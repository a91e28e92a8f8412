"""Run the walkthrough notebooks top to bottom, and keep them stored without outputs.

    python -m grading.notebooks run notebooks/01-02-reactor.ipynb   execute (as `make test` does)
    python -m grading.notebooks clean [FILES...]                   strip outputs in place
    python -m grading.notebooks check                              fail if any is stored with outputs

A notebook's assertion cells check what its prose claims, so running it is a test.
The kernel is this venv's Python, with py/ on its path (the .pth file tools/setup-venv.sh writes).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grading import cli
from paths import ROOT

NOTEBOOKS = ROOT / "notebooks"


def run(path: Path, timeout: int = 600) -> None:
    from nbclient import NotebookClient  # imported here: `check` must work without Jupyter's start-up cost
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()


def strip(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs and execution counts; True when anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell["outputs"], cell["execution_count"] = [], None
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("grading.notebooks", __doc__)
    parser.add_argument("action", choices=["run", "clean", "check"])
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    files = args.files or sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.action == "run":
        for path in files:
            run(path)
            print(f"{path}: ran top to bottom")
        return 0
    dirty = []
    for path in files:
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(path)
            if args.action == "clean":
                nbformat.write(nb, path)
    if args.action == "check" and dirty:
        print("stored with outputs (run `python -m grading.notebooks clean`):", *dirty, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
