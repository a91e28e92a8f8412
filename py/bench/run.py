"""Every measurement, one process each: the Python APIs (bench.worker, sampled) and fio."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fio
from bench.apis import APIS
from bench.worker import HELLO
from measuring import Heartbeat, child_env, data_file, make_data_file
from xray import proc
from xray.sampler import ThreadSampler

FIO_APIS = [f"fio ({engine})" for engine in fio.ENGINES]


def all_apis() -> list[str]:
    """Every row name, in the table's order: the Python APIs, then fio."""
    return [*APIS, *FIO_APIS]


@dataclass(frozen=True)
class Config:
    """What the bench runs. The defaults take about 3 minutes on a 2-core VM."""

    file_size: int = 1 << 30                  # the data file: far bigger than any cache in the way
    seconds: float = 3.0                      # per measurement
    depths: tuple[int, ...] = (1, 8, 32, 128)
    apis: tuple[str, ...] = ()                # only these (all when empty)

    @property
    def data_file(self) -> Path:
        """Made once in the labs' data directory, shared with `make reveal` (same name, same bytes)."""
        return data_file(self.file_size)

    def selected(self) -> list[str]:
        return [a for a in all_apis() if not self.apis or a in self.apis]


def threads_during(sampler: ThreadSampler, result: dict[str, Any]) -> list[str]:
    """Names of the threads other than the main one alive during the counted reads."""
    if result["t_start"] is None or result["t_end"] is None:
        return []
    return [s.name for s in sampler.threads()
            if s.tid != sampler.pid and s.first <= result["t_end"] and s.last >= result["t_start"]]


def run_python(api: str, qd: int, config: Config) -> dict[str, Any]:
    """One bench.worker process, its /proc/PID/task sampled while it runs."""
    argv = [sys.executable, "-m", "bench.worker", api, str(qd), str(config.data_file),
            "--seconds", str(config.seconds)]
    with proc.launch(argv, env=child_env(), stderr=subprocess.PIPE) as p:
        try:
            first = p.readline(timeout=60)
        except TimeoutError:
            first = ""
        if not first.startswith(HELLO):
            _, err = p.communicate(timeout=10)
            raise RuntimeError(f"{api} QD {qd}: the worker did not start: "
                               f"{err.decode(errors='replace').strip()[-300:]}")
        # Every 10 ms: enough to see threads that live through the run, light on 2 cores.
        with ThreadSampler(int(first.split()[-1]), interval=0.01) as sampler:
            try:
                out, err = p.communicate(timeout=config.seconds + 120)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{api} QD {qd}: the worker did not finish") from None
    lines = [line for line in (p.lines.rest() + out.decode(errors="replace")).splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{api} QD {qd}: no result ({err.decode(errors='replace').strip()[-300:]})")
    result: dict[str, Any] = json.loads(lines[-1])
    names = threads_during(sampler, result)
    result["threads"] = len(names) if result["iops"] is not None else None
    result["thread_names"] = sorted(set(names))
    return result


def run_one(api: str, qd: int, config: Config) -> dict[str, Any]:
    if api in FIO_APIS:
        result = fio.run(str(config.data_file), api[len("fio ("):-1], qd, config.seconds)
        result.update(threads=None, thread_names=[])   # C, no event loop: not what the columns ask
        return result
    return run_python(api, qd, config)


def idle_floor(seconds: float) -> float:
    """The worst lateness, in ms, of the heartbeat on an event loop that does nothing else:
    what this machine adds by itself (timer slack, other programs, a hypervisor), which no
    API can beat. Measured in this process, while no worker runs."""
    async def beat_alone() -> float:
        loop = asyncio.get_running_loop()
        heartbeat = Heartbeat(loop.time, asyncio.sleep)
        task = loop.create_task(heartbeat.run())
        await asyncio.sleep(seconds)
        heartbeat.stopped = True
        await task
        return heartbeat.worst
    return asyncio.run(beat_alone()) * 1e3


def run_all(config: Config, progress: Callable[[str], None] = print,
            floors: list[float] | None = None) -> list[dict[str, Any]]:
    """Every (API, QD) result, grouped by QD; progress gets one line per measurement. With
    floors, the idle loop's heartbeat is measured before each QD group and appended there: the
    machine's floor sampled through the run, not at one moment of it."""
    make_data_file(config.file_size)
    apis = config.selected()
    total = len(apis) * len(config.depths)
    width = max(len(a) for a in apis)
    results: list[dict[str, Any]] = []
    for qd in config.depths:
        if floors is not None:
            floors.append(round(idle_floor(min(config.seconds, 3.0)), 3))
            progress(f"an idle loop's heartbeat before QD {qd}: worst {floors[-1]:.2f} ms late")
        for api in apis:
            began = time.monotonic()
            try:
                result = run_one(api, qd, config)
            except (RuntimeError, OSError, subprocess.SubprocessError) as err:   # one broken row, not all
                result = {"api": api, "qd": qd, "iops": None, "error": str(err)}
            results.append(result)
            iops = "-" if result.get("iops") is None else f"{result['iops']:.0f} IOPS"
            note = result.get("error") or result.get("unavailable") or ""
            progress(f"[{len(results):2}/{total}] QD {qd:<3} {api:<{width}}  {iops:>12}  "
                     f"({time.monotonic() - began:.1f} s) {note}".rstrip())
    return results


Round = dict[str, dict[str, Any] | None]   # api -> its result in that round (None: it failed)


def paired_rounds(results: list[dict[str, Any]], apis: list[str], qd: int, config: Config,
                  rounds: int, progress: Callable[[str], None] = print) -> list[Round]:
    """The results of apis at qd in `rounds` rounds: round 1 is the table's own, the others
    are measured now, the apis back to back, in alternating order. On a virtual disk whose
    speed wanders (the host's cache, its neighbours) and a machine whose other programs come
    and go, one run of each can land on a fast and a slow moment; the median ratio of several
    adjacent rounds is what a target between two rows is judged on."""
    def table_row(api: str) -> dict[str, Any] | None:
        return next((r for r in results if r["api"] == api and r["qd"] == qd and r.get("iops")), None)

    out: list[Round] = [{api: table_row(api) for api in apis}]
    for k in range(1, rounds):
        this: Round = {}
        for api in (list(reversed(apis)) if k % 2 else apis):
            began = time.monotonic()
            try:
                row: dict[str, Any] | None = run_one(api, qd, config)
            except (RuntimeError, OSError, subprocess.SubprocessError):
                row = None
            this[api] = row if row and row.get("iops") else None
            shown = "-" if this[api] is None else f"{row['iops']:.0f} IOPS"   # type: ignore[index]
            progress(f"[round {k + 1}/{rounds}] QD {qd:<3} {api}  {shown}  ({time.monotonic() - began:.1f} s)")
        out.append(this)
    return out
