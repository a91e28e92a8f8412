"""The command line of each `python -m grading.X`: one shape of --help for all of them."""
from __future__ import annotations

import argparse


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of `python -m module`: the module's docstring is its help, line breaks kept.

    module is named by the caller ("grading.prove"): run with -m, its __name__ is "__main__".
    """
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
