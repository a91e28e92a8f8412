"""The container's pieces that need no container: the seccomp profile's widening, the flags written down."""
from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType
from typing import Any

import pytest

from paths import ROOT


def tool(name: str) -> ModuleType:
    path = ROOT / "tools" / "container" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"container_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Made-up profiles shaped like the runtimes' own: podman refuses perf_event_open without
# CAP_SYS_ADMIN by a rule of its own; Docker lets it through with CAP_PERFMON; neither allows io_uring.
PODMAN_LIKE: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
    {"names": ["read", "io_setup"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["bpf", "perf_event_open"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["perf_event_open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["io_uring_setup", "kexec_load"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
]}
DOCKER_LIKE: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
    {"names": ["read", "io_setup"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["perf_event_open"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_PERFMON"]}},
]}


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_io_uring_is_allowed_and_nothing_else_changes() -> None:
    widen = tool("seccomp").widen
    for before in (PODMAN_LIKE, DOCKER_LIKE):
        after = widen(before)
        for call in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
            assert [r["action"] for r in rules_for(after, call)] == ["SCMP_ACT_ALLOW"], call
        assert {k: v for k, v in after.items() if k != "syscalls"} == {k: v for k, v in before.items() if k != "syscalls"}
        assert rules_for(after, "read") == rules_for(before, "read")
        assert widen(after) == after, "widening twice changes nothing more"
    assert rules_for(widen(PODMAN_LIKE), "kexec_load")[0]["action"] == "SCMP_ACT_ERRNO"


def test_perf_event_open_is_let_through_with_perfmon_only() -> None:
    after = tool("seccomp").widen(PODMAN_LIKE)
    refusals = [r for r in rules_for(after, "perf_event_open") if r["action"] != "SCMP_ACT_ALLOW"]
    assert refusals and all("CAP_PERFMON" in r["excludes"]["caps"] for r in refusals)
    allowed = [r for r in rules_for(after, "perf_event_open") if r["action"] == "SCMP_ACT_ALLOW"]
    assert any(r["includes"].get("caps") == ["CAP_PERFMON"] for r in allowed)
    assert rules_for(tool("seccomp").widen(DOCKER_LIKE), "perf_event_open") == rules_for(DOCKER_LIKE, "perf_event_open")


def test_the_devcontainer_flags_are_the_readmes() -> None:
    """test.py runs the containers with devcontainer.json's flags; README's run line must say the same."""
    storage, flags = tool("test").devcontainer("x")
    assert any("target=/workshop/build" in m and "type=volume" in m for m in storage)
    readme = (ROOT / "README.md").read_text()
    line = re.search(r"^docker run .*?(?=^```)", readme, re.M | re.S)
    assert line, "README.md has no docker run line"
    for flag in flags:
        written = flag.replace(str(ROOT), "$PWD")
        assert written in line.group(0), f"{written} of devcontainer.json is not in README's docker run line"
    config = (ROOT / ".devcontainer" / "devcontainer.json").read_text()
    json.loads("\n".join(x for x in config.splitlines() if not x.lstrip().startswith("//")))


def test_the_docker_command_in_front_of_podman_gets_podmans_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    seccomp = tool("seccomp")
    answers = {"{{json .SecurityOptions}}": '["name=seccomp,profile=default"]', "{{.Server.Version}}": "4.3.1\n",
               "{{json .Server.Components}}": '[{"Name": "Podman Engine", "Version": "4.3.1"}]'}
    monkeypatch.setattr(seccomp, "_run", lambda *argv: answers.get(argv[-1]))
    monkeypatch.setattr(seccomp, "podman_default", lambda: ("{}", "podman's own"))
    assert seccomp.docker_default() == ("{}", "podman's own")


def test_dockers_builtin_profile_is_mobys_of_that_version(monkeypatch: pytest.MonkeyPatch) -> None:
    seccomp = tool("seccomp")
    answers = {"{{json .SecurityOptions}}": '["name=seccomp,profile=builtin"]', "{{.Server.Version}}": "28.3.2\n",
               "{{json .Server.Components}}": '[{"Name": "Engine", "Version": "28.3.2"}]'}
    monkeypatch.setattr(seccomp, "_run", lambda *argv: answers.get(argv[-1]))
    asked: list[str] = []

    def offline(url: str, timeout: float) -> None:
        asked.append(url)
        raise OSError("no network in this test")

    monkeypatch.setattr(seccomp.urllib.request, "urlopen", offline)
    with pytest.raises(SystemExit, match="--from FILE"):
        seccomp.docker_default()
    assert [u.split("/")[5] for u in asked] == ["v28.3.2", "docker-v28.3.2"]
