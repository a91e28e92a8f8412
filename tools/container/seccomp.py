#!/usr/bin/env python3
"""Write the workshop's seccomp profile: your container runtime's own default, plus what the labs need.

    python3 tools/container/seccomp.py                   # -> .devcontainer/seccomp.json
    python3 tools/container/seccomp.py --runtime podman  # or docker; --from FILE: start from that profile

Generated, never copied: the default profile belongs to the runtime version you have installed,
and the labs need only two changes to it, so everything else it forbids stays forbidden:

1. io_uring_setup, io_uring_enter and io_uring_register are allowed (lab 7, make reveal). Docker's
   default denies them (EPERM, since Docker 25); podman's answers ENOSYS.
2. perf_event_open is allowed to a container started with --cap-add=PERFMON. Docker's default does
   that already; podman's lets it through only with CAP_SYS_ADMIN, a far wider capability.

Where the default comes from: podman names its profile file (`podman info`; inside its VM on
macOS and Windows, read through `podman machine ssh`). Docker's is compiled into dockerd unless
the daemon was given a file, so for Docker the script reads moby's profiles/seccomp/default.json
of your engine's exact version from GitHub. Python 3 standard library only: it runs on the host.
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
URING = ["io_uring_setup", "io_uring_enter", "io_uring_register"]
ALLOW = "SCMP_ACT_ALLOW"
MOBY = "https://raw.githubusercontent.com/moby/moby/{tag}/profiles/seccomp/default.json"

Profile = dict[str, Any]


def widen(profile: Profile) -> Profile:
    """The profile with io_uring allowed, and perf_event_open allowed with CAP_PERFMON; nothing else changes."""
    out = copy.deepcopy(profile)
    rules: list[dict[str, Any]] = []
    for rule in out.get("syscalls", []):
        names = rule.get("names", [])
        if rule.get("action") == ALLOW:
            rules.append(rule)
            continue
        # A rule that refuses: io_uring leaves it; perf_event_open no longer applies with CAP_PERFMON.
        kept = [n for n in names if n not in URING and n != "perf_event_open"]
        if kept:
            rules.append({**rule, "names": kept})
        if "perf_event_open" in names:
            excludes = dict(rule.get("excludes") or {})
            excludes["caps"] = sorted(set(excludes.get("caps", [])) | {"CAP_PERFMON"})
            rules.append({**rule, "names": ["perf_event_open"], "excludes": excludes})
    if not any(set(URING) <= set(r.get("names", [])) and r.get("action") == ALLOW and not r.get("args")
               and not r.get("includes") and not r.get("excludes") for r in rules):
        rules.append({"names": URING, "action": ALLOW, "args": [], "comment": "the workshop: lab 7, make reveal",
                      "includes": {}, "excludes": {}})
    if not any("perf_event_open" in r.get("names", []) and r.get("action") == ALLOW and not r.get("args")
               and (r.get("includes") or {}).get("caps") == ["CAP_PERFMON"] for r in rules):
        rules.append({"names": ["perf_event_open"], "action": ALLOW, "args": [],
                      "comment": "the workshop: perf with --cap-add=PERFMON",
                      "includes": {"caps": ["CAP_PERFMON"]}, "excludes": {}})
    out["syscalls"] = rules
    return out


def _run(*argv: str) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(path: str, machine: bool) -> str | None:
    """A file of the runtime's: here, or in podman's VM (macOS, Windows)."""
    if Path(path).is_file():
        return Path(path).read_text()
    return _run("podman", "machine", "ssh", "cat", path) if machine else None


def podman_default() -> tuple[str, str]:
    info = _run("podman", "info", "--format", "json")
    if info is None:
        raise SystemExit("seccomp: `podman info` failed: is podman installed and its machine started?")
    data = json.loads(info)
    path = data["host"]["security"].get("seccompProfilePath") or "/usr/share/containers/seccomp.json"
    text = _read(path, machine=not Path(path).is_file())
    if text is None:
        raise SystemExit(f"seccomp: podman's profile {path} cannot be read here; pass it with --from FILE")
    return text, f"podman {data.get('version', {}).get('Version', '?')}'s default profile ({path})"


def docker_default() -> tuple[str, str]:
    options = _run("docker", "info", "--format", "{{json .SecurityOptions}}")
    version = (_run("docker", "version", "--format", "{{.Server.Version}}") or "").strip()
    if options is None or not version:
        raise SystemExit("seccomp: `docker info` failed: is Docker running?")
    components = json.loads(_run("docker", "version", "--format", "{{json .Server.Components}}") or "[]") or []
    if any(c.get("Name") == "Podman Engine" for c in components):
        return podman_default()   # the docker command talks to `podman system service`: the profile is podman's
    for option in json.loads(options) or []:
        fields = dict(f.split("=", 1) for f in option.split(",") if "=" in f)
        if fields.get("name") == "seccomp" and fields.get("profile") not in (None, "builtin", "default"):
            text = _read(fields["profile"], machine=False)
            if text is None:
                raise SystemExit(f"seccomp: the daemon's profile {fields['profile']} is not readable here; --from FILE")
            return text, f"Docker {version}'s daemon profile ({fields['profile']})"
    # Docker's tags: v28.3.2 until 28, docker-v29.0.0 since moby split its Go modules.
    for tag in (f"v{version}", f"docker-v{version}"):
        url = MOBY.format(tag=tag)
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                return answer.read().decode(), f"Docker {version}'s built-in profile ({url})"
        except OSError:
            continue
    raise SystemExit(f"seccomp: Docker {version}'s built-in profile could not be fetched from GitHub "
                     f"({MOBY.format(tag='v' + version)}): download it and pass it with --from FILE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", choices=["auto", "docker", "podman"], default="auto")
    parser.add_argument("--from", dest="source", type=Path, help="start from this profile instead")
    parser.add_argument("-o", "--out", type=Path, default=ROOT / ".devcontainer" / "seccomp.json")
    args = parser.parse_args()
    if args.source:
        text, origin = args.source.read_text(), str(args.source)
    elif args.runtime == "podman" or (args.runtime == "auto" and _run("docker", "info") is None):
        text, origin = podman_default()
    else:
        text, origin = docker_default()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(widen(json.loads(text)), indent=2) + "\n")
    print(f"seccomp: wrote {args.out}: {origin}, plus io_uring and perf_event_open with CAP_PERFMON", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
