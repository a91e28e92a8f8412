"""Every hint a grader test names is a section of its lab's hints.md: a misspelled key would show no hint."""
import ast
from pathlib import Path

import pytest

from grading.labs import Lab, all_labs
from grading.run import hints


def hint_marks(source: str) -> list[tuple[int, object]]:
    """(line, key) of every `pytest.mark.hint(...)` / `mark.hint(...)` in a test file; the key as written
    (a string, or the AST node of anything else: a key must be a literal to be checked)."""
    marks = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "hint"
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "mark"):
            arg = node.args[0] if node.args else None
            marks.append((node.lineno, arg.value if isinstance(arg, ast.Constant) else arg))
    return marks


def missing_hints(lab: Lab) -> list[str]:
    """Every hint mark of the lab's tests whose key hints.md lacks (or is not a plain string)."""
    keys = {key for key, _, _ in hints(lab)}
    problems = []
    for path in sorted(lab.tests_dir.glob("*.py")):
        for line, key in hint_marks(path.read_text()):
            where = f"{path.relative_to(lab.dir.parent.parent)}:{line}"
            if not isinstance(key, str):
                problems.append(f"{where}: the hint key is not a string literal, so it cannot be checked")
            elif key not in keys:
                problems.append(f"{where}: hint({key!r}) names no section of {lab.dir.name}/hints.md "
                                f"(its keys: {', '.join(sorted(keys))})")
    return problems


@pytest.mark.parametrize("lab", all_labs(), ids=lambda lab: lab.name)
def test_every_hint_a_test_names_is_in_hints_md(lab):
    assert not missing_hints(lab), "\n".join(missing_hints(lab))


def test_a_misspelled_key_is_reported(tmp_path: Path):
    lab_dir = tmp_path / "labs" / "09-x"
    (lab_dir / "tests").mkdir(parents=True)
    (lab_dir / "lab.toml").write_text('title = "x"\nbuilds = "x"\ntalk = "x"\n')
    (lab_dir / "hints.md").write_text("# Lab 9 — hints\n\n## upper: Capitals\n\nstr.upper().\n")
    (lab_dir / "tests" / "test_x.py").write_text(
        'import pytest\n\n@pytest.mark.hint("upper")\ndef test_a(): pass\n\n'
        '@pytest.mark.hint("uper")\ndef test_b(): pass\n\nKEY = "upper"\n@pytest.mark.hint(KEY)\ndef test_c(): pass\n')
    (lab,) = all_labs(tmp_path)
    problems = missing_hints(lab)
    assert len(problems) == 2, problems
    assert "test_x.py:6: hint('uper') names no section of 09-x/hints.md (its keys: upper)" in problems[0]
    assert "not a string literal" in problems[1]
