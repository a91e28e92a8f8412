"""The echo benchmark of `make bench`: five echo servers under one load generator, the same load for each.

    python -m bench --only echo [--quick] [--echo-server NAME ...] [--no-pin]

The servers, each in a process of its own, started fresh for every scenario with
`--port 0` (they print `listening on 127.0.0.1:PORT`):

- C reactor: build/bin/rx_echo, lab 2's epoll reactor in C;
- mini loop: `python -m miniloop.echo`, lab 2's Python loop (Future, Task, sock_recv);
- asyncio and uvloop: `python -m bench.echo_servers`, one asyncio.Protocol, on each loop;
- threads: `python -m peers.threaded_echo`, blocking calls, one thread per connection.

The load: build/bin/echo_load (c/loadgen), one C thread on epoll. N connections, each
with one message in flight: send it, wait for the whole echo, check every byte, again,
a fixed number of round trips (the same count for every server: bound by count, not
time). Scenarios: 100 and 1,000 connections, 64-byte and 4 KiB messages.

Fairness on a 2-core machine: the load generator is pinned to one CPU and the server to
the other (os.sched_setaffinity), so every server gets one whole core, the
thread-per-connection one too, and never fights the load for it. --no-pin leaves the
placement to the scheduler.

Measured per (scenario, server): requests/s and p50/p99 latency (echo_load's report),
the server's CPU time during the timed round trips and how long it waited for a CPU
meanwhile (the machine's noise), both from /proc/PID/task/*/schedstat, and the most
threads it had (xray.proc.threads, sampled). echo_report.py turns them into
the table, the JSON, the picture and the ratios to asyncio.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from grading.programs import parse_report
from grading.servers import NotListening, wait_port
from measuring import child_env
from paths import ROOT
from xray import proc

LOAD = "echo_load"
SERVER_NOFILE = 4096          # the servers' fd limit: 1,000 clients and room to spare
SAMPLE_S = 0.2                # how often the server's threads are counted while the load runs
RUN_TIMEOUT_S = 120.0         # one (scenario, server) run may not take longer than this


@dataclass(frozen=True)
class Scenario:
    """One load: N connections, each making `rounds` timed round trips of `size` bytes (per repeat)."""

    connections: int
    size: int
    rounds: int

    @property
    def name(self) -> str:
        size = f"{self.size >> 10} KiB" if self.size % 1024 == 0 else f"{self.size} B"
        return f"{self.connections:,} conn x {size}"


@dataclass(frozen=True)
class Server:
    """One echo server of the table."""

    name: str                                 # as the table shows it
    what: str                                 # one line for the legend
    argv: Callable[[Path], list[str]]         # given build/bin, how to start it (without --port)


SERVERS: dict[str, Server] = {s.name: s for s in [
    Server("C reactor", "build/bin/rx_echo: lab 2's epoll reactor in C",
           lambda bin_dir: [str(bin_dir / "rx_echo")]),
    Server("mini loop", "python -m miniloop.echo: lab 2's Python loop, a Task per client",
           lambda _: [sys.executable, "-m", "miniloop.echo"]),
    Server("asyncio", "python -m bench.echo_servers --loop asyncio: an asyncio.Protocol",
           lambda _: [sys.executable, "-m", "bench.echo_servers", "--loop", "asyncio"]),
    Server("uvloop", "python -m bench.echo_servers --loop uvloop: the same Protocol on uvloop",
           lambda _: [sys.executable, "-m", "bench.echo_servers", "--loop", "uvloop"]),
    Server("threads", "python -m peers.threaded_echo: blocking calls, a thread per connection",
           lambda _: [sys.executable, "-m", "peers.threaded_echo"]),
]}
BASELINE = "asyncio"          # every ratio is to this server, in the same run


@dataclass(frozen=True)
class Config:
    """What the echo benchmark runs. The defaults take about 1-2 minutes on a 2-core VM: the
    counts are sized so the slowest servers (mini loop, threads at 1,000) take a few seconds."""

    scenarios: tuple[Scenario, ...] = (Scenario(100, 64, 200), Scenario(100, 4096, 200),
                                       Scenario(1000, 64, 20), Scenario(1000, 4096, 20))
    repeats: int = 3                          # each server's row is the best of this many runs
    servers: tuple[str, ...] = ()             # only these (all when empty)
    pin: bool = True                          # load on one CPU, the server on another
    bin_dir: Path = field(default_factory=lambda: ROOT / "build" / "bin")

    def selected(self) -> list[str]:
        return [s for s in SERVERS if not self.servers or s in self.servers]

    def cpus(self) -> tuple[int, int] | None:
        """(load CPU, server CPU), or None when not pinning (asked, or fewer than 2 CPUs allowed)."""
        allowed = sorted(os.sched_getaffinity(0))
        return (allowed[0], allowed[1]) if self.pin and len(allowed) >= 2 else None


QUICK = Config(scenarios=(Scenario(100, 64, 20), Scenario(1000, 4096, 2)), repeats=1)   # seconds, for the tests


def _child_setup(cpu: int | None, nofile: int | None) -> Callable[[], None]:
    """A preexec_fn: in the child, before exec, pin it to cpu and raise its fd limit."""
    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        if nofile is not None:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
            if soft != resource.RLIM_INFINITY and soft < want:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return setup


def _threads(pid: int) -> int:
    """How many threads pid has now (0 once it is gone)."""
    for _ in range(3):
        try:
            return len(proc.threads(pid))
        except ProcessLookupError:   # a thread exited while we read its name: read again
            continue
        except FileNotFoundError:    # the process exited
            return 0
    return 0


def _parse_load(text: str) -> dict[str, Any]:
    """echo_load's report -> the row's numbers (AssertionError, with the text, if a line is missing)."""
    report = parse_report(text)
    number = r"([0-9.]+)"
    return {"requests": report.count("requests", r"(\d+) in"),
            "seconds": report.number("requests", rf"in {number} s"),
            "rps": report.number("requests", rf"{number} per second"),
            "p50_us": report.number("latency", rf"p50 {number} us"),
            "p99_us": report.number("latency", rf"p99 {number} us"),
            "max_us": report.number("latency", rf"max {number} us"),
            "load_cpu_s": round(report.number("cpu", rf"user {number} s") + report.number("cpu", rf"system {number} s"),
                                3),
            "load_runq_ms": round(1e3 * report.number("cpu", rf"waited {number} s"), 1)}


def _sched_seconds(pid: int) -> tuple[float, float]:
    """(CPU time, time spent waiting for a CPU while runnable) of all pid's threads so far, in
    seconds, from /proc/PID/task/*/schedstat: the scheduler's own nanosecond counts.
    (/proc/PID/stat, xray.proc.cpu_seconds, counts in 10 ms ticks: too coarse for a timed
    run of a few tenths of a second.) The wait is time other programs took from the server."""
    ran = waited = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except OSError:   # the thread exited meanwhile
            continue
        ran, waited = ran + int(fields[0]), waited + int(fields[1])
    return ran / 1e9, waited / 1e9


def _go(load: proc.Launched) -> None:
    """Tell echo_load (--sync) to go on; it may have exited already (it failed): then its report says why."""
    assert load.stdin is not None
    try:
        load.stdin.write(b"go\n")
        load.stdin.flush()
    except BrokenPipeError:
        pass


def _drive(server: proc.Launched, port: int, scenario: Scenario, config: Config) -> dict[str, Any]:
    """Run echo_load against the server on port; its numbers, and the server's CPU and threads.

    echo_load --sync stops twice and waits for us: once the warm-up is over, and once the
    timed round trips are (after its report, the connections still open). Each time we read
    the server's CPU time and count its threads: the CPU time between the two readings is
    that of the timed round trips, nothing else; and by the end of the warm-up every
    connection has been served once, so a thread-per-connection server has all its threads."""
    cpus = config.cpus()
    argv = [str(config.bin_dir / LOAD), "--port", str(port), "--connections", str(scenario.connections),
            "--size", str(scenario.size), "--rounds", str(scenario.rounds), "--sync"]
    began = time.monotonic()
    most_threads = _threads(server.pid)
    marks: list[tuple[float, float]] = []   # at the two stops: (server CPU s, run-queue wait s)
    with proc.launch(argv, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                     preexec_fn=_child_setup(cpus[0] if cpus else None, None)) as load:
        lines: list[str] = []
        while True:   # read the report as it comes; between lines, count the server's threads
            try:
                line: str | None = load.readline(timeout=SAMPLE_S)
            except TimeoutError:
                line = None   # no news yet
            most_threads = max(most_threads, _threads(server.pid))
            if line == "":
                break   # end of the report: echo_load exited
            if line is not None:
                lines.append(line)
                if line.startswith(("warm-up:", "cpu:")):   # a stop: measure, then let it go on
                    marks.append(_sched_seconds(server.pid))
                    _go(load)
            if time.monotonic() - began > RUN_TIMEOUT_S:
                raise RuntimeError(f"{LOAD} did not finish in {RUN_TIMEOUT_S:g} s")
        load.wait(timeout=10)
        assert load.stderr is not None
        err = load.stderr.read().decode(errors="replace").strip()
    if load.returncode != 0 or len(marks) != 2:
        raise RuntimeError(err or f"{LOAD} exited with status {load.returncode}")
    row = _parse_load("\n".join(lines))
    cpu, waited = marks[1][0] - marks[0][0], marks[1][1] - marks[0][1]
    row.update(server_cpu_s=round(cpu, 3), server_cpu_pct=round(100 * cpu / row["seconds"], 1),
               cpu_us_per_request=round(1e6 * cpu / row["requests"], 2), threads=most_threads,
               runq_ms=round(waited * 1e3, 1))
    return row


@dataclass
class _Running:
    """A server started for one scenario: its process, its port, its stderr (kept in a file)."""

    process: proc.Launched
    port: int
    stderr: IO[bytes]

    def last_words(self) -> str:
        self.stderr.seek(0)
        words = self.stderr.read().decode(errors="replace").strip()
        return f" (server's stderr: {words[-300:]})" if words else ""


def _start(stack: ExitStack, name: str, config: Config) -> _Running:
    """Start the server `name` (stopped when stack closes); wait for its `listening on` line."""
    cpus = config.cpus()
    err = stack.enter_context(tempfile.TemporaryFile())
    process = stack.enter_context(proc.launch(
        SERVERS[name].argv(config.bin_dir) + ["--port", "0"], env=child_env(), stdin=subprocess.DEVNULL,
        stderr=err, preexec_fn=_child_setup(cpus[1] if cpus else None, SERVER_NOFILE)))
    running = _Running(process, 0, err)
    try:
        running.port = wait_port(process, name, timeout=15)
    except NotListening as silent:
        time.sleep(0.2)   # let a dying server finish its last words
        raise RuntimeError(f"{silent}{running.last_words()}") from None
    return running


def run_scenario(scenario: Scenario, config: Config, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every selected server under this scenario's load, `config.repeats` times each, interleaved
    (a burst of noise from another program then hits one repeat of every server, not all
    repeats of one); each server's row is its best repeat (most requests/s). A row that
    failed says why in "error" instead of numbers."""
    names = config.selected()
    rows: dict[str, dict[str, Any]] = {
        name: {"server": name, "scenario": scenario.name, "connections": scenario.connections, "size": scenario.size,
               "rounds": scenario.rounds, "error": None, "rps_repeats": []} for name in names}
    load_bin = config.bin_dir / LOAD
    if not load_bin.exists():
        for row in rows.values():
            row["error"] = f"{load_bin} is missing: build the C code first (make build)"
        return list(rows.values())
    with ExitStack() as stack:
        running: dict[str, _Running] = {}
        for name in names:
            try:
                running[name] = _start(stack, name, config)
            except (RuntimeError, OSError) as error:
                rows[name]["error"] = str(error)
        for repeat in range(1, config.repeats + 1):
            for name, server in list(running.items()):
                try:
                    row = _drive(server.process, server.port, scenario, config)
                    if server.process.poll() is not None:
                        raise RuntimeError(f"the server exited with status {server.process.returncode}")
                except (RuntimeError, OSError, TimeoutError, AssertionError, KeyError,
                        subprocess.SubprocessError) as error:
                    rows[name]["error"] = f"{error}{server.last_words()}"
                    del running[name]   # no more repeats for a server that failed once
                    continue
                rows[name]["rps_repeats"].append(row["rps"])
                if row["rps"] >= rows[name].get("rps", 0):
                    rows[name].update(row)
            rates = ", ".join(f"{name} {_rate(rows[name])}" for name in names)
            progress(f"  {scenario.name:<20} repeat {repeat}/{config.repeats}: {rates}")
    return list(rows.values())


def _rate(row: dict[str, Any]) -> str:
    return "failed" if row["error"] else f"{row['rps_repeats'][-1]:,.0f}/s"


def run_all(config: Config, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every (scenario, server) row, grouped by scenario; a progress line per repeat of a scenario."""
    rows: list[dict[str, Any]] = []
    for scenario in config.scenarios:
        rows += run_scenario(scenario, config, progress)
    return rows
