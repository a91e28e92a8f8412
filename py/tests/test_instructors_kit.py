"""The instructors' kit (docs/instructors/) stays true to the repository, and its handout builds.

- every `make TARGET`, path, grader test, mutant, hint and slide title the kit names exists (kit.refs),
  and a renamed target, a removed file or a renamed test is caught, named with the page to fix;
- `make handout` is a target listed by `make help` and in README.md;
- the handout builds to HTML that loads nothing from the network, with the network refused where
  this machine can refuse it (unshare -n, as root), and fits its page (measured when Chromium is here);
- the offline cache's scripts: the package list comes from setup-system.sh itself.
"""
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from deck.build import BuildError, node_ready
from kit import handout, refs
from paths import ROOT


def test_everything_the_kit_names_exists() -> None:
    assert refs.problems(ROOT) == []


def _fake_root(tmp_path: Path) -> Path:
    """A copy of what the check reads: the kit's pages and the Makefile copied (to be edited), the rest linked."""
    fake = tmp_path / "repo"
    fake.mkdir()
    shutil.copytree(ROOT / refs.KIT, fake / refs.KIT)
    shutil.copy(ROOT / "Makefile", fake / "Makefile")
    for name in ("labs", "py", "c", "notebooks", "tools", "slides", "README.md", "requirements.txt",
                 "pytest.ini", "mypy.ini"):
        (fake / name).symlink_to(ROOT / name)
    return fake


def test_a_renamed_target_is_caught(tmp_path: Path) -> None:
    fake = _fake_root(tmp_path)
    assert refs.problems(fake) == []
    makefile = fake / "Makefile"
    makefile.write_text(makefile.read_text().replace("\nreveal: setup", "\nreveal-all: setup"))
    found = refs.problems(fake)
    assert any("`make reveal`" in p and "run-sheet.md" in p for p in found), found


def test_a_missing_file_test_mutant_hint_or_slide_is_caught(tmp_path: Path) -> None:
    fake = _fake_root(tmp_path)
    page = fake / refs.KIT / "run-sheet.md"
    page.write_text(page.read_text() + "\n\nSee `tools/no-such-script.sh`, `test_no_such_test` and "
                    "`no-such-mistake.patch`. Hint `no-such-hint`.\n\n"
                    '| part | from the slide |\n|---|---|\n| 8 | "No such slide title" |\n')
    found = "\n".join(refs.problems(fake))
    for name in ("tools/no-such-script.sh", "test_no_such_test", "no-such-mistake.patch", "no-such-hint",
                 "No such slide title"):
        assert name in found


def test_handout_is_a_listed_target() -> None:
    done = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "make handout" in done.stdout
    assert "`make handout`" in (ROOT / "README.md").read_text()


def test_pdf_pages_counts_pages_inside_object_streams(tmp_path: Path) -> None:
    objects = zlib.compress(b"<< /Type /Pages /Count 2 >> << /Type /Page >> << /Type /Page >>")
    pdf = tmp_path / "two.pdf"
    pdf.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /ObjStm >>\nstream\n" + objects + b"\nendstream\nendobj\n%%EOF")
    assert handout.pdf_pages(pdf) == 2


def _network_refused() -> list[str]:
    """A command prefix that runs a program with no network (a namespace with only loopback), or []."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return ["unshare", "-n"] if probe.returncode == 0 else []


def test_the_handout_builds_offline_and_fits_its_page() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed to build the handout (tools/setup-system.sh slides)")
    try:
        node_ready(ROOT / "slides")   # npm ci if node_modules is not the lock's: may need the network
    except BuildError as err:
        pytest.fail(f"Marp cannot be installed: {err}")
    offline = _network_refused()
    done = subprocess.run([*offline, sys.executable, "-m", "kit", "handout", "--no-pdf"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "py")})
    assert done.returncode == 0, done.stdout + done.stderr
    html = (ROOT / handout.OUT / "handout.html").read_text()
    assert "Where does the wait go?" in html
    assert handout.offline_problems(html) == []


def test_the_offline_cache_takes_its_package_list_from_setup_system() -> None:
    listed = subprocess.run([str(ROOT / "tools" / "setup-system.sh"), "--list"], capture_output=True,
                            text=True, check=True).stdout.split()
    if not listed:
        pytest.skip("not a Debian or Ubuntu system: setup-system.sh lists nothing here")
    assert {"gcc", "libaio-dev", "liburing-dev", "strace", "python3-venv"} <= set(listed)
    with_slides = subprocess.run([str(ROOT / "tools" / "setup-system.sh"), "--list", "slides"],
                                 capture_output=True, text=True, check=True).stdout.split()
    assert {"nodejs", "npm"} <= set(with_slides) and set(listed) <= set(with_slides)
    script = (ROOT / "tools" / "offline-cache.sh").read_text()
    assert "tools/setup-system.sh --list" in script
    usage = subprocess.run([str(ROOT / "tools" / "offline-cache.sh")], capture_output=True, text=True)
    assert usage.returncode == 2 and "OFFLINE_CACHE=DIR" in usage.stdout
