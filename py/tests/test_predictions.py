"""grading.predictions: a notebook's guesses read back beside what was measured."""
from __future__ import annotations

import pytest

from grading.predictions import read_back


def test_each_guess_beside_the_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    read_back({"threads created": 1, "preads on the loop thread": None}, {"threads created": 6, "preads on the loop thread": 0})
    out = capsys.readouterr().out
    assert "No prediction was filled in" not in out
    assert "threads created            you predicted 1, the machine says 6" in out
    assert "preads on the loop thread  no prediction, the machine says 0" in out


def test_none_filled_in_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    read_back({"a": None, "b": " "}, {"a": 1, "b": 2})
    out = capsys.readouterr().out
    assert out.count("No prediction was filled in") == 1 and "the machine says 2" in out


def test_a_look_not_measured_here_names_every_guess(capsys: pytest.CaptureFixture[str]) -> None:
    read_back({"SQ entries": 8, "CQ entries": 16}, {})
    out = capsys.readouterr().out
    assert "SQ entries  you predicted 8, not measured here" in out and "CQ entries" in out
