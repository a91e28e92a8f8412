"""`python -m kit handout | check`: see the package docstring."""
from __future__ import annotations

import argparse
import sys

from deck.build import BuildError
from kit import __doc__ as overview
from kit import handout, refs
from paths import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit", description=overview,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["handout", "check"])
    parser.add_argument("--no-pdf", action="store_true", help="handout: the HTML only")
    args = parser.parse_args(argv)
    root = ROOT
    if args.action == "check":
        problems = refs.problems(root)
        for problem in problems:
            print(f"  ✗ {problem}")
        print(f"kit: {'OK' if not problems else f'{len(problems)} problem(s)'} "
              f"({len(refs.kit_pages(root))} pages of docs/instructors/ checked)")
        return 1 if problems else 0
    try:
        built = handout.build(root, pdf=not args.no_pdf)
    except BuildError as err:
        print(f"handout: {err}", file=sys.stderr)
        return 1
    made = [built.html.relative_to(root)] + ([built.pdf.relative_to(root)] if built.pdf else [])
    pages = f", {built.pages} page" + ("s" if built.pages != 1 else "") if built.pages is not None else ""
    print(f"handout: {' and '.join(map(str, made))}{pages}  ({built.seconds:.1f} s)")
    for note in built.notes:
        print(f"handout: {note}")
    for problem in built.problems:
        print(f"handout: ✗ {problem}")
    return 1 if built.problems else 0


if __name__ == "__main__":
    sys.exit(main())
