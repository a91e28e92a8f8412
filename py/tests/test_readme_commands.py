"""The READMEs' commands are run by make test (grading.readme_commands): a made-up README shows
that a failing command fails, a server is stopped at its time and its text checked, a value it
prints reaches the commands after it, a not-run block needs a reason, a command a machine cannot
run is skipped with the reason, and a learner's own build/grade/labN survives."""
from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from grading.labs import load_lab
from grading.readme_blocks import MarkerError, parse, unmarked_commands
from grading.readme_commands import Result, reference_tree, run_readme

SERVER = "python3 -c \"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); " \
         "print('listening on 127.0.0.1:%d' % s.getsockname()[1], flush=True); time.sleep(600)\""


def readme(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text(textwrap.dedent(text))
    return path


def run(tmp_path: Path, text: str) -> list[Result]:
    return run_readme(readme(tmp_path, text), root=tmp_path, env={"PATH": "/usr/bin:/bin"})


def outcomes(results: list[Result]) -> list[str]:
    return [r.outcome for r in results]


def test_a_failing_command_fails_and_says_what_it_printed(tmp_path: Path) -> None:
    results = run(tmp_path, """\
        # Lab

        <!-- run -->
        ```sh
        echo first
        ls no-such-file          # -e: the block stops here
        echo never
        ```

        <!-- run: status=3 -->
        ```sh
        sh -c 'exit 3'           # a refusal the README shows
        ```
        """)
    assert outcomes(results) == ["failed", "passed"]
    assert "exit status 2, expected 0" in results[0].message
    assert "first" in results[0].message and "no-such-file" in results[0].message
    assert "never" not in results[0].message


def test_a_server_is_stopped_at_its_time_and_its_text_checked(tmp_path: Path) -> None:
    results = run(tmp_path, f"""\
        <!-- run: stop=1 expect="listening on 127.0.0.1:" -->
        ```sh
        {SERVER}
        ```

        <!-- run: stop=1 expect="ready to serve" -->
        ```sh
        {SERVER}
        ```

        <!-- run: timeout=1 -->
        ```sh
        sleep 30                 # waits for ever: not marked stop=, so it fails
        ```
        """)
    assert outcomes(results) == ["passed", "failed", "failed"]
    assert 0.9 < results[0].seconds < 5
    assert "does not show 'ready to serve'" in results[1].message and "listening on" in results[1].message
    assert "still running after 1 s" in results[2].message
    left = subprocess.run(["pgrep", "-f", "s.getsockname"], capture_output=True, text=True).stdout.split()
    assert not left, "a stopped block leaves nothing running"


def test_a_kept_server_serves_the_blocks_after_it_with_what_it_printed(tmp_path: Path) -> None:
    results = run(tmp_path, f"""\
        <!-- run -->
        ```sh
        GREETING=hello           # remembered by the next blocks, as a terminal would
        mkdir -p sub
        cd sub
        ```

        <!-- run: keep expect="listening on 127.0.0.1:{{PORT}}" -->
        ```sh
        {SERVER}
        ```

        <!-- run: expect="hello from sub, port" -->
        ```sh
        echo "$GREETING from $(basename $PWD), port PORT" # PORT is the number the server printed
        python3 -c "import socket; socket.create_connection(('127.0.0.1', PORT)).close()"
        ```
        """)
    assert outcomes(results) == ["passed", "passed", "passed"], [r.message for r in results]
    assert "left running" in results[1].message


def test_a_kept_server_that_never_says_it_is_ready_fails_and_its_users_are_skipped(tmp_path: Path) -> None:
    results = run(tmp_path, """\
        <!-- run: keep timeout=1 expect="listening on 127.0.0.1:{PORT}" -->
        ```sh
        sleep 60
        ```

        <!-- run -->
        ```sh
        echo PORT
        ```
        """)
    assert outcomes(results) == ["failed", "skipped"]
    assert "PORT" in results[1].message and "line 2" in results[1].message


def test_typed_input_and_a_terminal(tmp_path: Path) -> None:
    results = run(tmp_path, """\
        <!-- run: input="typed line" expect="got: typed line" -->
        ```sh
        read -r line; echo "got: $line"
        ```

        <!-- run: tty stop=1 expect="a terminal" -->
        ```sh
        test -t 0 && test -t 1 && echo "a terminal"; sleep 30
        ```
        """)
    assert outcomes(results) == ["passed", "passed"], [r.message for r in results]


def test_not_run_needs_a_reason_and_is_reported_with_it(tmp_path: Path) -> None:
    results = run(tmp_path, """\
        <!-- not-run: it runs make test itself (it would recurse) -->
        ```sh
        make test
        ```
        """)
    assert outcomes(results) == ["not run"] and "recurse" in results[0].message
    with pytest.raises(MarkerError, match="needs its reason"):
        parse(tmp_path / "x.md", "<!-- not-run -->\n```sh\nmake test\n```\n")


@pytest.mark.parametrize("text,says", [
    ("```sh\nls\n```\n", "no marker"),
    ("<!-- run: timout=3 -->\n```sh\nls\n```\n", "unknown marker option 'timout'"),
    ("<!-- run -->\n\n```sh\nls\n```\n", "right before"),
    ("<!-- run: keep -->\n```sh\nls\n```\n", "keep block needs expect"),
    ("<!-- run -->\n```text\nls\n```\n", "only shell blocks"),
])
def test_markers_are_checked(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(MarkerError, match=says):
        parse(tmp_path / "x.md", text)


def test_run_all_gives_its_options_to_every_block(tmp_path: Path) -> None:
    blocks = parse(tmp_path / "x.md", "<!-- run: needs=perf -->\n```sh\nls\n```\n<!-- run-all: needs=io_uring -->\n")
    assert blocks[0].options.needs == ["io_uring", "perf"]


def test_what_this_machine_lacks_is_a_skip_with_its_reason(tmp_path: Path) -> None:
    results = run(tmp_path, """\
        <!-- run: needs=no-such-program-here -->
        ```sh
        no-such-program-here --help
        ```
        """)
    assert outcomes(results) == ["skipped"]
    assert "no-such-program-here is not installed" in results[0].message


def test_an_inline_command_of_the_steps_must_be_in_a_block(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        ## Steps

        1. Try `$B/tool --fast`, then `$B/tool --slow` (`--slow` waits), and `make lab1`.

           <!-- run -->
           ```sh
           $B/tool --fast
           ```

        ## Done when

        `$B/tool --other` is not in the steps.
        """)
    path = tmp_path / "README.md"
    assert unmarked_commands(path, parse(path, text), text) == ["$B/tool --slow"]


def test_a_learners_build_is_set_aside_and_put_back(tmp_path: Path) -> None:
    root, state = tmp_path / "repo", tmp_path / "repo" / "build" / "grade"
    (root / "c").mkdir(parents=True)
    (root / "py").mkdir()
    (root / "c" / "ref.c").write_text("reference\n")
    (root / "labs" / "01-x").mkdir(parents=True)
    (root / "labs" / "01-x" / "lab.toml").write_text('title = "x"\n[[file]]\nref = "c/ref.c"\nstarter = "ref.c"\n')
    lab = load_lab(root / "labs" / "01-x")
    mine = state / "lab1" / "c" / "ref.c"
    mine.parent.mkdir(parents=True)
    mine.write_text("the learner's\n")

    def builder(tree: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess([], 0, "", "")

    with reference_tree(lab, state, root, builder) as tree:
        assert tree == state / "lab1" and (tree / "c" / "ref.c").read_text() == "reference\n"
    assert mine.read_text() == "the learner's\n"
    with pytest.raises(KeyboardInterrupt), reference_tree(lab, state, root, builder):
        raise KeyboardInterrupt
    assert mine.read_text() == "the learner's\n"
    # A run killed before it could put it back: the next one does it first.
    (state / "lab1").rename(state / ".lab1.yours")
    (state / "lab1" / "c").mkdir(parents=True)
    (state / "lab1" / ".reference-for-readme-commands").write_text("")
    with reference_tree(lab, state, root, builder):
        pass
    assert mine.read_text() == "the learner's\n" and not (state / ".lab1.yours").exists()
