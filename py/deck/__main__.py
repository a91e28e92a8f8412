"""`python -m deck build | check`: see the package docstring."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from deck import __doc__ as overview
from deck.build import BuildError, build, find_chromium
from deck.check import Report, check_notes, check_references, check_rendered, check_screens
from paths import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deck", description=overview,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "check"])
    parser.add_argument("--setup", action="store_true",
                        help="first run tools/setup-system.sh slides (Node.js, npm, Chromium on Debian)")
    parser.add_argument("--no-pdf", action="store_true", help="HTML only (faster)")
    parser.add_argument("--shot", type=int, action="append", default=[], metavar="N",
                        help="check: also render slide N to build/slides/shot-slideN.png")
    parser.add_argument("--measured", type=Path, metavar="DIR",
                        help="where make reveal / make bench wrote reveal/ and bench/ (default: build/), "
                             "e.g. results copied from the machine the workshop runs on")
    args = parser.parse_args(argv)
    root = ROOT
    if args.setup and subprocess.run([str(root / "tools" / "setup-system.sh"), "slides"]).returncode != 0:
        print("slides: tools/setup-system.sh slides failed (see above)", file=sys.stderr)
        return 1
    try:
        built = build(root, pdf=not args.no_pdf, measured=args.measured)
    except BuildError as err:
        print(f"slides: {err}", file=sys.stderr)
        return 1
    for edition, what in zip(built.editions, ("the workshop", "the talk alone, no lab slides")):
        print(f"slides: {what}: {len(edition.deck.slides)} slides -> {edition.html.relative_to(root)}"
              + (f" and {edition.pdf.relative_to(root)}" if edition.pdf else ""))
    print(f"slides: built in {built.seconds:.1f} s")
    for note in built.notes:
        print(f"slides: {note}")
    if args.action == "build":
        print(f"slides: open {built.workshop.html.relative_to(root)} in a browser "
              "(press P for the presenter view with notes)")
        return 0
    report = Report()
    workshop = built.workshop
    check_references(workshop.deck, root, report)
    check_notes(workshop.deck, report)
    for edition in built.editions:
        check_rendered(edition.deck, edition.html.read_text(), report, edition.html.name)
    # The talk's slides are the workshop's, laid out alike: measuring the workshop's covers both.
    check_screens(workshop.deck, workshop.html, find_chromium(), report, args.shot)
    for line in report.info:
        print(f"  ✓ {line}")
    for line in report.pending:
        print(f"  - pending (another lab is writing it): {line}")
    for line in report.errors:
        print(f"  ✗ {line}")
    print(f"slides: {'OK' if not report.errors else f'{len(report.errors)} problem(s)'}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
