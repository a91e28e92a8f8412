"""The deck's machinery (py/deck) and the snippet files its slides show (slides/snippets).

These check the expansion, the references, the editions, the snippets and the judging of the
measurements without Node.js or Chromium; one test lays a small made-up deck out in Chromium
(skipped without Node.js and Chromium). `python -m deck check` (in `make test`) builds the real
HTML and measures it.
"""
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deck import include, machine
from deck.build import BuildError, Deck, Slide, find_chromium, load, marp, split
from deck.check import (CODE_MIN_PX, Report, check_notes, check_readability, check_references, check_rendered,
                        not_blank, readability)
from paths import DATA_DIR, ROOT

PY = '''\
"""A module."""


class Loop:
    """A loop."""

    def recv(self, n: int) -> bytes:
        """Receive."""
        # BEGIN SOLUTION lab2
        # TODO: try first;
        #   then wait.
        # STUB: raise NotImplementedError("lab2: recv")
        try:
            return b"x" * n
        except BlockingIOError:
            pass
        return b""
        # END SOLUTION
'''

C = '''\
/* c.c — a file. */
struct pair {
    int a;
};

int nb_thing(int fd)
{
    /* BEGIN SOLUTION lab1
     * TODO: do it.
     * STUB: (void)fd;
     * STUB: return -ENOSYS;
     */
    int flags = fd + 1;
    return flags;
    /* END SOLUTION */
}
'''


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    (tmp_path / "py").mkdir()
    (tmp_path / "py" / "mod.py").write_text(PY)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "c.c").write_text(C)
    return tmp_path


def code(spec: str, root: Path) -> list[str]:
    return include.extract(include.parse(spec), root)


def test_a_lab_solution_is_refused_wherever_the_region_touches_it(repo: Path) -> None:
    """The talk comes before the labs: no sample may show a line of a BEGIN/END SOLUTION block."""
    for spec in ("py/mod.py#Loop.recv", "py/mod.py#Loop", "py/mod.py", "c/c.c#nb_thing", "c/c.c",
                 'c/c.c#nb_thing from="return flags"', "c/c.c#L5-14"):
        with pytest.raises(include.IncludeError, match=r"solution .*must not hand out a lab's answer.*`starter`"):
            code(spec, repo)


def test_the_lines_around_a_solution_block_are_shown(repo: Path) -> None:
    assert code("c/c.c#pair", repo) == ["struct pair {", "    int a;", "};"]
    assert code("c/c.c#L2-4", repo) == ["struct pair {", "    int a;", "};"]
    assert code('c/c.c#nb_thing to="{"', repo) == ["int nb_thing(int fd)", "{"]


def test_starter_shows_the_todo_and_stub_not_the_answer(repo: Path) -> None:
    """`starter` shows what the learner's starter has there, generated from the reference."""
    assert code("py/mod.py#Loop.recv starter", repo) == [
        "def recv(self, n: int) -> bytes:",                # dedented, docstring dropped
        "    # TODO(lab2): try first;", "    #   then wait.", '    raise NotImplementedError("lab2: recv")']
    assert '"""Receive."""' in code("py/mod.py#Loop.recv starter doc", repo)[1]
    assert code("c/c.c#nb_thing starter", repo) == [
        "int nb_thing(int fd)", "{", "    /* TODO(lab1): do it. */", "    (void)fd;", "    return -ENOSYS;", "}"]
    assert code('c/c.c#nb_thing starter from="TODO" to="TODO"', repo) == ["/* TODO(lab1): do it. */"]
    assert include.expand(include.parse("c/c.c#nb_thing starter"), repo).endswith(
        '<div class="src">c/c.c · nb_thing (the starter)</div>')
    (repo / "c" / "plain.c").write_text("int f(void)\n{\n    return 0;\n}\n")
    with pytest.raises(include.IncludeError, match="no solution block"):
        code("c/plain.c#f starter", repo)


def test_the_starter_caption_names_the_learners_file() -> None:
    out = include.expand(include.parse("c/nonblock/nb.c#nb_recv_some_spin starter"), ROOT)
    assert '<div class="src">labs/01-nonblocking/nb.c · nb_recv_some_spin (the starter)</div>' in out


@pytest.mark.parametrize("spec, message", [
    ("py/nope.py#f", "no such file"),
    ("py/mod.py#Loop.send", "no function or class named 'Loop.send'"),
    ("c/c.c#nb_other", "no C function or struct named 'nb_other'"),
    ('c/c.c#nb_thing from="not there"', "no line contains from='not there'"),
    ("c/c.c#L1-99", "out of range"),
    ("c/c.c#pair max=2", "more than a slide shows (2)"),
    ("c/c.c#pair width=10", "wider than a slide (10)"),
    ("c/c.c#pair bogus=1", "unknown option"),
])
def test_a_bad_include_is_an_error_that_says_why(repo: Path, spec: str, message: str) -> None:
    with pytest.raises(include.IncludeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        code(spec, repo)


def test_expand_adds_fence_and_caption(repo: Path) -> None:
    out = include.expand(include.parse("c/c.c#pair"), repo)
    assert out.splitlines()[0] == "```c" and '<div class="src">c/c.c · pair</div>' in out


def test_split_ignores_rules_inside_code_and_needs_front_matter() -> None:
    front, slides = split("---\nmarp: true\n---\n\n# One\n\n```\n---\n```\n\n---\n\n# Two\n")
    assert front == "marp: true\n"
    assert [body.strip().splitlines()[0] for _, body in slides] == ["# One", "# Two"]
    with pytest.raises(BuildError):
        split("# no front matter\n")


SMALL = {"read_size": 16384, "reads": 256, "passes": 3}
REVEAL_ROWS = [
    {"api": "aiofiles", "file_mode": "buffered", "verdict": "threads", "user_threads": 5, **SMALL},
    {"api": "aiofiles", "file_mode": "O_DIRECT", "verdict": "unavailable", "reason": "failed with EINVAL", **SMALL},
    {"api": "caio linux", "file_mode": "buffered", "verdict": "blocks-loop", "device_wait_ms": 7.94,
     "waited_passes": 3, "submit_ms": 9.2, **SMALL},
    {"api": "kernaio (io_submit, lab 6)", "file_mode": "O_DIRECT", "verdict": "kernel-async", "device_wait_ms": 0,
     "waited_passes": 0, "submit_ms": 2.51, **SMALL},
    {"api": "io_uring + SQPOLL", "file_mode": "O_DIRECT", "verdict": "kernel-async", "kernel_threads": 1,
     "device_wait_ms": 0, "waited_passes": 0, "submit_ms": 0.2, **SMALL},
    {"api": "kernaio (io_submit, lab 6)", "file_mode": "O_DIRECT", "verdict": "blocks-loop",
     "read_size": 4 << 20, "reads": 16}]   # the large reads: on no slide


def write_reveal(build: Path, rows: list[dict[str, object]]) -> None:
    (build / "reveal").mkdir(exist_ok=True)
    (build / "reveal" / "reveal.json").write_text(json.dumps(rows))


def test_machine_slides_say_which_target_to_run_until_it_has_run(tmp_path: Path) -> None:
    for what, target in (("reveal-threads", "make reveal"), ("reveal-loop", "make reveal"), ("bench", "make bench")):
        assert target in machine.expand(what, tmp_path)
    with pytest.raises(ValueError):
        machine.expand("nothing", tmp_path)


def test_reveal_slides_say_what_the_table_says(tmp_path: Path) -> None:
    write_reveal(tmp_path, REVEAL_ROWS)
    who = machine.expand("reveal-threads", tmp_path)
    assert "| API | buffered file (cache dropped) | O_DIRECT file (no cache) |" in who   # which file is which
    assert "| aiofiles | threads ×5 | EINVAL (unaligned) |" in who
    assert "| caio linux | the loop thread | – |" in who
    assert "| io_uring + SQPOLL | – | the loop thread + 1 kernel thread |" in who
    assert "256 reads of 16 KiB" in who and "dense" not in who
    loop = machine.expand("reveal-loop", tmp_path)
    # Only the rows whose loop thread made the calls, with reveal's stall columns and the verdict.
    assert "aiofiles" not in loop.split('<div class="verdicts">')[0]
    assert "| caio linux | buffered | **7.9 ms (3/3)** | 9.2 ms | **waits for the disk** |" in loop
    assert "| kernaio (io_submit) | O_DIRECT | 0 ms (0/3) | 2.5 ms | kernel-async |" in loop
    # The conclusions are the table's: change a verdict and they change.
    assert ("**1 API reads on threads** · **the loop waited for the disk:** caio linux (buffered) · "
            "**no thread, no wait:** kernaio (O_DIRECT) · "
            "**no wait, a kernel thread instead:** io_uring + SQPOLL (O_DIRECT)") in loop, loop
    write_reveal(tmp_path, [dict(r, verdict="blocks-loop") if r["api"].startswith("kernaio") else r for r in REVEAL_ROWS])
    assert "waited for the disk:** caio linux (buffered), kernaio (O_DIRECT)" in machine.expand("reveal-loop", tmp_path)


def test_a_long_table_gets_the_smaller_font(tmp_path: Path) -> None:
    write_reveal(tmp_path, [dict(REVEAL_ROWS[0], api=f"api {i}") for i in range(machine.ROWS_AT_FULL_SIZE + 1)])
    assert '<div class="dense">' in machine.expand("reveal-threads", tmp_path)


def test_bench_chart_names_buffered_rows_and_shows_threads_and_stalls(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    rows = [{"api": "kernaio", "qd": 32, "iops": 21000.0, "threads": 0, "stall_ms": 1.5, "mode": "O_DIRECT"},
            {"api": "aiofile (caio linux)", "qd": 32, "iops": 7500.0, "threads": 1, "stall_ms": 12.0,
             "mode": "buffered, cache dropped"},
            {"api": "asyncio alone (no I/O)", "qd": 32, "iops": 215000.0, "threads": 0, "mode": "no I/O"},
            {"api": "fio (libaio)", "qd": 32, "iops": 55000.0, "threads": None, "stall_ms": None, "mode": "O_DIRECT"}]
    (tmp_path / "bench" / "bench.json").write_text(json.dumps({"rows": rows, "idle_loop_stall_ms": 2.25}))
    slide = machine.expand("bench", tmp_path)
    assert "IOPS at QD 32 · O_DIRECT unless buffered" in slide and "an idle loop: 2.2 ms" in slide
    svg = base64.b64decode(slide.split("base64,")[1].split(")")[0]).decode()
    assert "aiofile (caio linux), buffered</text>" in svg and ">kernaio</text>" in svg
    assert "21,000 · 0 thr · stall 1.5 ms</text>" in svg and ">55,000</text>" in svg
    assert "asyncio alone" not in svg   # it would flatten every bar


def test_the_deck_expands_and_every_slide_has_notes(tmp_path: Path) -> None:
    """Every include of slides/deck.md resolves, every reference exists (or is pending)."""
    deck = load(ROOT, tmp_path)   # no measurements: the "run make reveal" variant
    report = Report()
    check_references(deck, ROOT, report)
    check_notes(deck, report)
    assert report.errors == []
    assert any(slide.diagrams for slide in deck.slides)


def test_references_and_rendering_problems_are_reported(tmp_path: Path) -> None:
    deck = load(ROOT, tmp_path)
    deck.slides[1].source += "\n`make no-such-target` and py/no/such/file.py\n"
    deck.slides[2].source = "## no notes here"
    report = Report()
    check_references(deck, ROOT, report)
    check_notes(deck, report)
    check_rendered(deck, '<img src="https://cdn.example/x.svg">', report)
    text = "\n".join(report.errors)
    for expected in ("make no-such-target", "py/no/such/file.py does not exist", "no speaker notes",
                     "Marp made 0 slides", "remote resource"):
        assert expected in text


def test_the_talk_edition_leaves_out_the_workshop_slides() -> None:
    sources = ["# Title", "<!-- _class: workshop -->\n## How this deck works", "## A slide",
               "<!-- _class: lab -->\n## Your turn", "<!-- _class: punch lab-like -->\n# The end"]
    deck = Deck("marp: true\n", [Slide(number=n, line=n, source=src) for n, src in enumerate(sources, start=1)])
    talk = deck.talk_only()
    assert [s.source.splitlines()[-1] for s in talk.slides] == ["# Title", "## A slide", "# The end"]
    assert [s.number for s in talk.slides] == [1, 2, 3]   # as deck.html#N counts them
    real = load(ROOT, ROOT / "build" / "no-measurements")
    assert 0 < len(real.talk_only().slides) < len(real.slides)
    assert not any("lab" in s.classes for s in real.talk_only().slides)


# MEASURE's output for a deck of one slide, as check_readability reads it from Chromium.
CONTROLS = {"width": 354, "height": 56, "bottom": 50}   # Marp's navigation controls, in screen pixels


def measured(**slide: object) -> dict[str, object]:
    fine = {"number": 1, "laid_out": True, "wide": 0, "tall": 0, "pre_overflow": False, "code_min": [20, "x = 1"],
            "text": [[70, 120, 600, 40, "A heading"]], "images": [], "broken": []}
    return {"controls": CONTROLS, "slides": [fine | slide]}


@pytest.mark.parametrize("slide, says", [
    ({"tall": 30}, "overflows: 30px too tall"),
    ({"pre_overflow": True}, "a code line wider than its box"),
    ({"code_min": [17, "import asyncio"]}, f"code in 17px ('import asyncio'): at least {CODE_MIN_PX}px"),
    ({"text": [[600, 630, 300, 30, "The loop waited."]]}, "'The loop waited.' (y 630-660) lies under the "
     "navigation controls on a 1280x720 and a 1920x1080 screen"),
    ({"text": [[600, 620, 300, 20, "caption"]]}, "on a 1280x720 screen"),          # above them at 1080p
    ({"images": [[70, 119, 1140, 534, "a diagram"]]}, "'a diagram' (y 119-653) lies under"),
    ({"broken": ["thread-based."]}, "the heading breaks 'thread-based.' across two lines"),
    ({"laid_out": False}, "did not lay it out"),
])
def test_readability_rules_each_find_their_problem(slide: dict[str, object], says: str) -> None:
    assert readability(measured()) == []
    problems = readability(measured(**slide))
    assert len(problems) == 1 and says in problems[0], problems


def test_text_beside_the_controls_is_fine() -> None:
    """The controls cover the middle of the bottom: a page number or a caption at the right is not under them."""
    assert readability(measured(text=[[900, 640, 300, 20, "src caption"], [70, 640, 300, 20, "left"]])) == []


MINI_STYLE = "  section.tiny pre code { font-size: 15px; }\n"   # what the deck once had for long samples
MINI_DECK = """
<!-- _class: tiny -->

## Code too small

```python
print("from the back of the hall?")
```

<!-- a note -->

---

## Hidden

<div style="position: absolute; top: 625px; left: 0; right: 0; text-align: center">the line that matters</div>

<!-- a note -->

---

<!-- _class: punch -->

# Essentially, both approaches are thread-based.

<!-- a note -->
"""


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium here (tools/setup-system.sh slides installs it)")
def test_chromium_measures_a_deck_that_breaks_each_rule(tmp_path: Path) -> None:
    """A made-up deck in the real deck's style: each of its slides breaks one rule, and the check says which."""
    front, _ = split((ROOT / "slides" / "deck.md").read_text())
    source = tmp_path / "mini.md"
    source.write_text("---\n" + front + MINI_STYLE + "---\n" + MINI_DECK)
    html = tmp_path / "mini.html"
    try:
        marp(ROOT, source, html)
    except BuildError as err:
        pytest.skip(f"Marp cannot run here: {str(err)[:200]}")
    report = Report()
    check_readability(html, str(find_chromium()), report)
    errors = "\n".join(report.errors)
    assert "slide 1: code in 15px" in errors, errors
    assert "slide 2: 'the line that matters'" in errors and "navigation controls" in errors, errors
    assert "slide 3: the heading breaks 'thread-based.' across two lines" in errors, errors
    assert len(report.errors) == 3, errors


def test_not_blank(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw
    blank, drawn = tmp_path / "blank.png", tmp_path / "drawn.png"
    Image.new("RGB", (320, 180), "white").save(blank)
    image = Image.new("RGB", (320, 180), "white")
    ImageDraw.Draw(image).text((10, 10), "What's wrong with async FS?" * 3, fill="black")
    ImageDraw.Draw(image).rectangle([20, 60, 300, 160], fill="#1565c0")
    image.save(drawn)
    assert not_blank(blank) is not None and not_blank(drawn) is None


def test_snippet_run_in_thread_reads_on_another_thread() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "slides" / "snippets" / "run_in_thread.py")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    loop_thread, reader = done.stdout.split("runs on ")[1].split(";")[0], done.stdout.strip().split("ran on ")[1]
    assert loop_thread == "MainThread" and reader != "MainThread", done.stdout


def test_snippet_talks_sock_recv_still_runs_on_asyncio() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "slides" / "snippets" / "sock_recv_as_printed.py")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "received b'ping'; the loop still watches the socket: False", done.stdout


def test_snippet_waiting_task_size_measures_hundreds_of_bytes() -> None:
    """Slide 6 says a waiting Task with its coroutine is ~900 B: the snippet measures it (CPython 3.11: 895)."""
    done = subprocess.run([sys.executable, str(ROOT / "slides" / "snippets" / "waiting_task_size.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    size = int(done.stdout.split("Future: ")[1].split(" bytes")[0])
    assert 500 <= size <= 1500, done.stdout


def test_snippet_kernaio_gather_uses_no_thread() -> None:
    pytest.importorskip("kernaio", reason="kernaio's extension is not built (make setup builds it)")
    from grading.programs import make_data
    data = make_data("deck-snippet.bin", 1 << 18, seed=5)
    probe = DATA_DIR / ".deck-o-direct"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except OSError as err:
        pytest.skip(f"O_DIRECT refused in {DATA_DIR}: {err.strerror}")
    finally:
        probe.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, str(ROOT / "slides" / "snippets" / "kernaio_gather.py"), str(data.path)],
                          capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT / "py")))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "262144 bytes in 64 reads; threads: 1", done.stdout


def test_a_pending_lab_is_reported_not_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deck.check
    monkeypatch.setattr(deck.check, "PENDING", {"labs/09-future"})
    deck_ = load(ROOT, tmp_path)
    deck_.slides[1].source += "\n`make lab9` in labs/09-future/README.md\n"
    report = Report()
    check_references(deck_, ROOT, report)
    assert report.errors == [] and len(report.pending) == 2, report
