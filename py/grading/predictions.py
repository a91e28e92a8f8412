"""Read a notebook's predictions back once the machine has answered.

Each "Predict" cell of a notebook fills a dict (`my_prediction = {"threads created": None, ...}`);
after the measurement, one call prints each guess beside what was measured:

    read_back(my_prediction, {"threads created": 6, "preads on the loop thread": 0})

      threads created            you predicted 1, the machine says 6
      preads on the loop thread  no prediction, the machine says 0

A value left at None (or "") is "no prediction"; when none was filled in, the first line says
so. A key measured but not predicted, or predicted but not measured here (a look skipped
because strace or perf cannot run), is named as such, never silently dropped.
"""
from __future__ import annotations

from collections.abc import Mapping


def _unfilled(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def read_back(predicted: Mapping[str, object], measured: Mapping[str, object]) -> None:
    """Print "you predicted X, the machine says Y" for each key (None: a notebook cell shows nothing more)."""
    lines = []
    if all(_unfilled(v) for v in predicted.values()):
        lines.append("No prediction was filled in above (every value is still None): "
                     "here is what the machine says, to compare with next time.")
    keys = [*measured, *(k for k in predicted if k not in measured)]
    width = max(map(len, keys), default=0)
    for key in keys:
        guess = predicted.get(key)
        said = f"the machine says {measured[key]}" if key in measured else "not measured here"
        if key not in predicted:
            lines.append(f"  {key:<{width}}  (no prediction asked), {said}")
        elif _unfilled(guess):
            lines.append(f"  {key:<{width}}  no prediction, {said}")
        else:
            lines.append(f"  {key:<{width}}  you predicted {guess!r}, {said}")
    print("\n".join(lines))
