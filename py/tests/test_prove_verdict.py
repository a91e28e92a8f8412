"""`make test`'s judgement of one grader test from its two outcomes."""
from grading.prove import verdict


def record(outcome, smoke=False, message=""):
    return {"outcome": outcome, "smoke": smoke, "message": message}


def test_proven_only_when_reference_passes_and_starter_fails():
    assert verdict("t", record("passed"), record("failed"))[1] is True
    assert verdict("t", record("passed"), record("passed"))[1] is False
    assert verdict("t", record("failed"), record("failed"))[1] is False


def test_a_broken_fixture_on_the_starter_proves_nothing():
    assert verdict("t", record("passed"), record("error"))[1] is False


def test_smoke_tests_need_only_the_reference():
    assert verdict("t", record("passed", smoke=True), record("passed", smoke=True))[1] is True
    assert verdict("t", record("failed", smoke=True), record("passed", smoke=True))[1] is False


def test_skips_are_neither_proven_nor_failed():
    assert verdict("t", record("skipped", message="no strace"), None) == ("skipped on the reference: no strace", None)


def test_a_test_that_never_ran_on_the_starter_proves_nothing():
    text, ok = verdict("t", record("passed"), record("not run"))
    assert ok is False and "did not run" in text
