#!/usr/bin/env python3
"""`make test-container`: build the workshop's image with podman and prove it in containers.

The learner's way exactly: the checkout mounted at /workshop, .venv, build/ and slides/node_modules
in volumes filled from the image, the flags of .devcontainer/devcontainer.json. In containers:

  doctor, default profile   io_uring and perf reported blocked, each with the flag that fixes it
  doctor, workshop flags    every check passes
  lab1 REF=1, default       done
  lab7 REF=1, default       every test but a check of the source skipped, each saying why and the fix
  lab7 REF=1, flags         done, nothing skipped
  reveal, flags             the table, nothing degraded, lab 7's io_uring rows kernel-async

Containers run with --network=none: the image must hold everything. This machine's kind reaches
Debian's archive, PyPI and npm but no registry: without a base image, one is made with debootstrap
(tools/container/base.sh) and kept in podman's store; the image's layers are kept too, so a second
run only runs the containers. Logs: build/container/*.log.

Podman here: rootful podman 4.3 with runc (crun refuses a hybrid cgroup v1/v2 host) and ulimits no
higher than its own, written in a containers.conf that CONTAINERS_CONF points at.
"""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "container"
IMAGE = "localhost/asyncfs-workshop:test"
DEBIAN = "docker.io/library/debian:bookworm"   # the Containerfile's default base
MADE_BASE = "localhost/asyncfs-base:bookworm"   # the same, made here from Debian's archive
PODMAN_NPROC = 32768   # podman 4.3 lowers its own process limit to this; a container's cannot be higher


def say(text: str) -> None:
    print(text, flush=True)


def podman(*args: str, log: Path | None = None, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    return done


def containers_conf() -> Path:
    """runc, and ulimits at or below this host's hard limits (podman asks for more than a host may give)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], PODMAN_NPROC)
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    conf = OUT / "containers.conf"
    conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n\n'
                    '[engine]\nruntime = "runc"\n')
    return conf


def base_image() -> str:
    """BASE if given; else Debian's image if podman has or can pull it; else one made with debootstrap."""
    wanted = os.environ.get("BASE", "")
    for image in ([wanted] if wanted else [DEBIAN, MADE_BASE]):
        if podman("image", "exists", image).returncode == 0:
            return image
    if wanted:
        return wanted   # podman build pulls it, or says why not
    if podman("pull", "-q", DEBIAN, timeout=120).returncode == 0:
        return DEBIAN
    say(f"  no registry reachable: making {MADE_BASE} from Debian's archive (debootstrap, about a minute)")
    subprocess.run([str(ROOT / "tools" / "container" / "base.sh"), MADE_BASE], check=True)
    return MADE_BASE


def build(base: str) -> None:
    argv = ["build", "--network=host", "--layers", "-f", str(ROOT / "tools" / "container" / "Containerfile"),
            "--build-arg", f"BASE={base}", "-t", IMAGE]
    # This machine's TLS to PyPI and npm may pass a proxy its own CA bundle trusts: lend it to the build.
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if bundle.is_file():
        argv += ["--secret", f"id=cacert,src={bundle}"]
    done = podman(*argv, str(ROOT), log=OUT / "build.log")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SystemExit(f"test-container: the image did not build:\n{tail}\n(whole log: build/container/build.log)")
    podman("image", "prune", "-f")   # the images this tag replaced; the layers it is made of stay, as a cache


def devcontainer(volumes: str) -> tuple[list[str], list[str]]:
    """(storage, security): run arguments from .devcontainer/devcontainer.json (JSON with // comment lines)."""
    text = (ROOT / ".devcontainer" / "devcontainer.json").read_text()
    config = json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))

    def expand(value: str) -> str:
        return value.replace("${localWorkspaceFolder}", str(ROOT)).replace("${devcontainerId}", volumes)

    storage = [f"--mount={expand(config['workspaceMount'])}", *(f"--mount={expand(m)}" for m in config["mounts"])]
    return storage, [expand(arg) for arg in config["runArgs"]]


def run(name: str, storage: list[str], flags: list[str], command: str) -> str:
    """make COMMAND in a container; its output (also in build/container/NAME.log)."""
    done = podman("run", "--rm", "--network=none", *storage, *flags, "--workdir=/workshop", IMAGE,
                  "bash", "-c", command, log=OUT / f"{name}.log")
    out = done.stdout + done.stderr
    return out + f"\n[exit code {done.returncode}]"


# ---- what each run must show -------------------------------------------------------------------

def doctor_default(out: str) -> list[str]:
    problems = []
    failed = re.findall(r"^  ✗ (\S+)", out, re.M)
    if sorted(failed) != ["io_uring", "perf"]:
        problems.append(f"blocked under the default profile: {failed or 'nothing'}, not io_uring and perf")
    uring = _section(out, "io_uring")
    if "ENOSYS" not in uring or "--security-opt=seccomp=" not in uring:
        problems.append("io_uring's line does not say ENOSYS and the --security-opt=seccomp= fix")
    perf = _section(out, "perf")
    if "--cap-add=PERFMON" not in perf or "/sys/kernel/tracing" not in perf:
        problems.append("perf's line does not give --cap-add=PERFMON and the tracefs mount")
    if "a podman container" not in out:
        problems.append("doctor does not say it runs in a podman container")
    return problems


def doctor_flags(out: str) -> list[str]:
    failed = re.findall(r"^  ✗ (\S+)", out, re.M)
    return [f"still blocked with the workshop's flags: {failed}"] if failed or "All set." not in out else []


def lab_done(lab: str) -> Callable[[str], list[str]]:
    def check(out: str) -> list[str]:
        problems = [] if f"{lab} is done ✓" in out else [f"{lab} is not done"]
        skipped = re.findall(r"^  - (\S+)", out, re.M)
        return problems + ([f"skipped: {skipped}"] if skipped and lab == "lab7" else [])
    return check


def lab7_default(out: str) -> list[str]:
    skips = re.findall(r"^  - (\S+) .*skipped: (.*)$", out, re.M)
    problems = [] if skips else ["no test was skipped"]
    problems += [f"{name} skipped without saying io_uring is blocked: {why}" for name, why in skips
                 if "io_uring_setup failed: ENOSYS" not in why or "seccomp" not in why]
    problems += [f"failed: {name}" for name in re.findall(r"^  ✗ (\S+)", out, re.M)]
    return problems


def reveal(out: str) -> list[str]:
    problems = [] if "[exit code 0]" in out else ["make reveal failed"]
    problems += [f"degraded: {line.strip()}" for line in out.splitlines() if "DEGRADED" in line]
    rows = [line for line in out.splitlines() if line.startswith("[") and "uring_lab.so" in line]
    problems += [] if rows else ["no io_uring row (uring_lab.so) in the table"]
    problems += [f"io_uring not measured: {' '.join(row.split())}" for row in rows if "kernel-async" not in row]
    return problems


def _section(out: str, name: str) -> str:
    """A check's line of make doctor and its wrapped fix."""
    found = re.search(rf"^  . {re.escape(name)} .*?(?=^  [·✓✗] |\Z)", out, re.M | re.S)
    return " ".join(found.group(0).split()) if found else ""


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["CONTAINERS_CONF"] = str(containers_conf())
    started = time.monotonic()
    times: list[tuple[str, float]] = []

    def step(name: str, fn: Callable[[], object]) -> object:
        t = time.monotonic()
        result = fn()
        times.append((name, time.monotonic() - t))
        say(f"  {name:<34} {times[-1][1]:6.1f}s")
        return result

    say(f"test-container: podman {podman('version', '--format', '{{.Client.Version}}').stdout.strip()}, "
        f"image {IMAGE}")
    base = step("base image", base_image)
    step("seccomp profile (seccomp.py)", lambda: subprocess.run(
        [sys.executable, str(ROOT / "tools" / "container" / "seccomp.py"), "--runtime", "podman"], check=True))
    step(f"image (on {base})", lambda: build(str(base)))
    volumes = f"test-{os.getpid()}"
    storage, flags = devcontainer(volumes)
    runs = [
        ("doctor-default", [], "make doctor", doctor_default),
        ("doctor-flags", flags, "make doctor", doctor_flags),
        ("lab1-default", [], "make lab1 REF=1", lab_done("lab1")),
        ("lab7-default", [], "make lab7 REF=1", lab7_default),
        ("lab7-flags", flags, "make lab7 REF=1", lab_done("lab7")),
        ("reveal-flags", flags, "make reveal", reveal),
    ]
    failures = []
    try:
        for name, extra, command, check in runs:
            out = step(f"{command} ({name.split('-')[1]})", lambda: run(name, storage, extra, command))
            problems = check(str(out))
            failures += [f"{name}: {p}" for p in problems]
            for problem in problems:
                say(f"    ✗ {problem}  (build/container/{name}.log)")
    finally:
        names = [f"asyncfs-{kind}-{volumes}" for kind in ("venv", "build", "node")]
        podman("volume", "rm", "-f", *names)
    say(f"test-container: {len(runs) - len({f.split(':')[0] for f in failures})} of {len(runs)} runs as "
        f"expected, {time.monotonic() - started:.0f} s in all")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
