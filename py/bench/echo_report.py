"""The echo benchmark's outputs: the table (terminal and echo.txt), echo.json, echo.png; ratios to asyncio."""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

from bench.echo import BASELINE, SERVERS, Config
from bench.report import _cpus, _num

Row = dict[str, Any]
REACTOR, UVLOOP = "C reactor", "uvloop"   # the headline: how far the lab's C reactor is ahead of uvloop
NOISY = 0.1   # a server that waited for its CPU this share of its run was disturbed by other programs
LOAD_BOUND = 0.9   # echo_load busy this share of the run: the load generator, not the server, was the limit
# The measures divided by asyncio's: the row's field, and its name.
MEASURES = {"rps": "requests/s", "p99_us": "p99 latency", "cpu_us_per_request": "CPU per request"}


def _value(rows: list[Row], server: str, scenario: str, key: str) -> float | None:
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario and r.get(key):
            return float(r[key])
    return None


def _scenarios(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(r["scenario"] for r in rows))


def ratios(rows: list[Row]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{server: {scenario: {measure: this server's value / asyncio's}}}, None when one is missing."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for server in dict.fromkeys(r["server"] for r in rows):
        out[server] = {}
        for scenario in _scenarios(rows):
            out[server][scenario] = {}
            for key in MEASURES:
                mine, base = _value(rows, server, scenario, key), _value(rows, BASELINE, scenario, key)
                out[server][scenario][key] = round(mine / base, 3) if mine and base else None
    return out


def _geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def headline(rows: list[Row]) -> dict[str, Any]:
    """The C reactor over uvloop, per scenario and as a geometric mean: requests/s, and CPU per request."""
    per: dict[str, dict[str, float | None]] = {}
    for scenario in _scenarios(rows):
        per[scenario] = {}
        for key in ("rps", "cpu_us_per_request"):
            mine, theirs = _value(rows, REACTOR, scenario, key), _value(rows, UVLOOP, scenario, key)
            per[scenario][key] = round(mine / theirs, 3) if mine and theirs else None
    rps = [v for by in per.values() if (v := by["rps"])]
    cpu = [v for by in per.values() if (v := by["cpu_us_per_request"])]
    if not rps or not cpu:
        missing = f"{REACTOR} vs {UVLOOP}: not measured (a row is missing)."
        return {"per_scenario": per, "rps": None, "cpu_per_request": None, "text": missing, "short": missing}
    beats = "beats uvloop in every scenario" if max(cpu) < 1 else "does NOT beat uvloop everywhere"
    text = (f"{REACTOR} vs {UVLOOP}: uvloop spends {1 / _geomean(cpu):.2f}x the C reactor's CPU per request "
            f"({1 / max(cpu):.2f}x to {1 / min(cpu):.2f}x over {len(cpu)} scenarios, geometric mean); the C reactor "
            f"serves {_geomean(rps):.2f}x uvloop's requests/s ({min(rps):.2f}x to {max(rps):.2f}x). "
            f"On CPU per request, the C reactor {beats}.")
    short = (f"{REACTOR} vs {UVLOOP} (geometric means): {_geomean(cpu):.2f}x the CPU per request, "
             f"{_geomean(rps):.2f}x the requests/s")
    return {"per_scenario": per, "rps": round(_geomean(rps), 3), "cpu_per_request": round(_geomean(cpu), 3),
            "text": text, "short": short}


def _columns(header: list[str], cells: list[list[str]], left: set[int]) -> list[str]:
    """Lines of a text table: the header, a rule, the cells; columns in `left` left-aligned."""
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()
             for row in [header, *cells]]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def table(rows: list[Row], config: Config) -> str:
    """The table as text, grouped by scenario, then the ratios to asyncio and the headline."""
    rat = ratios(rows)
    header = ["scenario", "server", "requests/s", "x asyncio", "p50 µs", "p99 µs", "x asyncio", "CPU µs/req",
              "x asyncio", "server CPU %", "runq ms", "threads", "load CPU %"]
    cells: list[list[str]] = []
    for r in rows:
        mine = rat[r["server"]][r["scenario"]]
        base = r["server"] == BASELINE
        load = 100 * r["load_cpu_s"] / r["seconds"] if r.get("load_cpu_s") and r.get("seconds") else None
        cells.append([r["scenario"], r["server"], _num(r.get("rps")), "" if base else _times(mine["rps"]),
                      _num(r.get("p50_us")), _num(r.get("p99_us")), "" if base else _times(mine["p99_us"]),
                      _num(r.get("cpu_us_per_request"), 1), "" if base else _times(mine["cpu_us_per_request"]),
                      _num(r.get("server_cpu_pct")), _num(r.get("runq_ms")), _num(r.get("threads")), _num(load)])
    lines = _columns(header, cells, {0, 1})
    body = lines[2:]
    out = [_title(config), "", *lines[:2]]
    for i, (r, line) in enumerate(zip(rows, body)):
        if i and r["scenario"] != rows[i - 1]["scenario"]:
            out.append("")
        out.append(line)
    scenarios = _scenarios(rows)
    out += ["", "requests/s divided by asyncio's, per scenario (same run):"]
    out += ["  " + line for line in _columns(
        ["server", *scenarios],
        [[server, *[_num(by[s]["rps"], 2) for s in scenarios]] for server, by in rat.items()], {0})]
    out += ["", headline(rows)["text"], *_noise(rows), "", *_legend(config)]
    broken = [f"  {r['scenario']} {r['server']}: {r['error']}" for r in rows if r.get("error")]
    if broken:
        out += ["", "Rows that did not run:", *broken]
    return "\n".join(out) + "\n"


def _noise(rows: list[Row]) -> list[str]:
    """Warnings: where echo_load was the limit (its CPU busy), and where a one-thread server or the
    load waited for a CPU for a good part of a run (another program had it). In both cases the
    row's requests/s and latencies understate the server."""
    def share(r: Row) -> float:
        mine = float(r["runq_ms"]) if r.get("threads") == 1 else 0.0   # many threads wait for each other
        return max(mine, float(r["load_runq_ms"])) / 1e3 / float(r["seconds"])

    measured = [r for r in rows if r.get("seconds") and r.get("runq_ms") is not None]
    loaded = [f"{r['server']} ({r['scenario']})" for r in measured
              if r.get("load_cpu_s") and r["load_cpu_s"] >= LOAD_BOUND * r["seconds"]]
    out = [] if not loaded else [
        f"Load-bound: echo_load used {LOAD_BOUND:.0%} or more of its CPU for {', '.join(loaded)}:",
        "  there the load generator, not the server, set the pace (requests/s understates the server; compare "
        "CPU µs/req)."]
    busy = [r for r in measured if share(r) > NOISY]
    if not busy:
        return out
    worst = max(busy, key=share)
    return out + [
        f"Noisy: in {len(busy)} of {len(rows)} rows the server or the load waited for a CPU more than {NOISY:.0%} of "
        f"the run (worst: {worst['server']}, {worst['scenario']}, {share(worst):.0%}):",
        "  other programs ran on their CPUs. Those requests/s and latencies understate the server (CPU µs/req "
        "suffers less). Run again on a quieter machine."]


def _title(config: Config) -> str:
    cpus = config.cpus()
    where = (f"load pinned to CPU {cpus[0]}, server to CPU {cpus[1]}" if cpus else "not pinned")
    return (f"make bench (echo): every server gets the same load from echo_load (C, one thread, epoll), a fixed "
            f"number of round trips;\n{where}; Linux {platform.release()}, {_cpus()} CPUs.")


def _legend(config: Config) -> list[str]:
    rounds = ", ".join(f"{s.name}: {s.rounds}" for s in config.scenarios)
    return ["Servers (fresh processes for every scenario, `--port 0`):",
            *[f"  {s.name:<10} {s.what}" for s in SERVERS.values() if s.name in config.selected()],
            "asyncio and uvloop run the SAME asyncio.Protocol (the fast path of both loops), not streams.",
            "Load: each connection has one message in flight: send, wait for the whole echo, check every byte, "
            "repeat.",
            "  Timed round trips per connection and run, after one warm-up round trip each:",
            f"  {rounds}.",
            f"  Each server ran {config.repeats} times, interleaved with the others; its row is its best run (most "
            "requests/s).",
            "requests/s = timed round trips / their wall time; p50/p99 = one round trip, from send() to the last "
            "byte back.",
            "CPU µs/req = the server's CPU time (all threads, /proc/PID/task/*/schedstat) during the timed round "
            "trips, per round",
            "  trip; server CPU % = that CPU time over their wall time (100 = one whole core); threads = the most "
            "the server had.",
            "runq ms = how long the server's threads waited for a CPU while runnable (the same file): time other "
            "programs took",
            "  from a one-thread server; for the thread-per-connection server, mostly its threads waiting for each "
            "other.",
            "load CPU % = echo_load's own CPU time during the timed round trips over their time: near 100, the load "
            "would be the limit.",
            "x asyncio: requests/s and p99 and CPU/req divided by asyncio's in the same scenario "
            "(for p99 and CPU, lower is better)."]


def write_json(rows: list[Row], config: Config, seconds: float, path: Path) -> None:
    cpus = config.cpus()
    doc = {"config": {"scenarios": [{"name": s.name, "connections": s.connections, "size": s.size,
                                     "rounds": s.rounds} for s in config.scenarios], "repeats": config.repeats,
                      "servers": {name: SERVERS[name].what for name in config.selected()},
                      "baseline": BASELINE, "pinned": {"load_cpu": cpus[0], "server_cpu": cpus[1]} if cpus else None},
           "machine": {"kernel": platform.release(), "cpus": _cpus()},
           "runtime_s": round(seconds, 1),
           "rows": rows, "ratios_to_asyncio": ratios(rows), "reactor_vs_uvloop": headline(rows)}
    path.write_text(json.dumps(doc, indent=2) + "\n")


def draw(rows: list[Row], path: Path) -> None:
    """echo.png: requests/s, CPU per request and p99 latency; a group of bars per scenario, a bar per server."""
    import matplotlib
    matplotlib.use("Agg")   # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    scenarios = _scenarios(rows)
    servers = list(dict.fromkeys(r["server"] for r in rows))
    colors = {"C reactor": "#d62728", "uvloop": "#9467bd", "asyncio": "#1f77b4", "mini loop": "#2ca02c",
              "threads": "#7f7f7f"}   # red for the lab's reactor, as kernaio is red in iops.png
    rat = ratios(rows)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.8))
    width = 0.8 / len(servers)
    panels = ((axes[0], "rps", 1.0, "requests/s (higher is better; over a bar: x asyncio)"),
              (axes[1], "cpu_us_per_request", 1.0, "server CPU µs per request (lower is better)"),
              (axes[2], "p99_us", 1e-3, "p99 latency, ms (lower is better; log scale)"))
    for ax, key, scale, label in panels:
        for k, server in enumerate(servers):
            xs = [i + (k - (len(servers) - 1) / 2) * width for i in range(len(scenarios))]
            ys = [(_value(rows, server, s, key) or 0.0) * scale for s in scenarios]
            bars = ax.bar(xs, ys, width, label=server if ax is axes[0] else None,
                          color=colors.get(server, "#bcbd22"))
            if key == "rps" and server != BASELINE:
                for bar, s in zip(bars, scenarios):
                    ratio = rat[server][s]["rps"]
                    if ratio:
                        ax.annotate(f"{ratio:.1f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                    ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(scenarios)), [s.replace(" x ", "\n") for s in scenarios], fontsize=9)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if key == "p99_us":
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))   # 10, 20, 50, 100, ...
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))          # written 10, not 10^1
            ax.yaxis.set_minor_formatter(NullFormatter())
    fig.legend(loc="upper center", ncol=len(servers), fontsize=9, bbox_to_anchor=(0.5, 0.93))
    fig.suptitle(f"Echo over loopback, the same load for every server — Linux {platform.release()}\n"
                 f"{headline(rows)['short']}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
    plt.close(fig)
