"""`make bench --quick`, run for real: the outputs' schema and sane numbers (never absolute speed)."""
import json
import subprocess
import sys

import pytest

from bench.run import all_apis
from paths import ROOT
from xray import Unavailable
from xray.doctor import check_o_direct

ROW = {"api": str, "qd": int, "mode": str, "ops": int, "iops": (float, int, type(None)),
       "p50_us": (float, int, type(None)), "p99_us": (float, int, type(None)),
       "threads": (int, type(None)), "stall_ms": (float, int, type(None)),
       "unavailable": (str, type(None)), "error": (str, type(None))}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One quick run: every API at QD 1 and 8, 0.4 s each, on a 64 MiB file (about 15 s)."""
    ok, seen, todo = check_o_direct()
    if not ok:
        raise Unavailable(f"O_DIRECT is not available in the data directory: {seen}; {todo}")
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "files", "--out", str(out)],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc.stdout, json.loads((out / "bench.json").read_text())


def test_every_api_at_every_depth_has_a_row_with_the_promised_fields(bench):
    out, stdout, doc = bench
    depths = doc["config"]["depths"]
    assert depths == [1, 8]
    assert [(r["api"], r["qd"]) for r in doc["rows"]] == [(a, qd) for qd in depths for a in all_apis()]
    for row in doc["rows"]:
        for name, kind in ROW.items():
            assert isinstance(row[name], kind), f"{row['api']} QD {row['qd']}: {name} = {row[name]!r}"
        assert row["iops"] is not None or row["unavailable"] or row["error"], row
    assert (out / "iops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "bench.txt").read_text()
    assert all(api in text and api in stdout for api in all_apis())
    assert "Targets" in text and "kernaio's IOPS divided by" in text and "CPU µs/read" in text


def test_kernaio_measured_sanely_with_no_thread_and_the_ratios_follow(bench):
    doc = bench[2]
    rows = {(r["api"], r["qd"]): r for r in doc["rows"]}
    for qd in (1, 8):
        mine = rows["kernaio", qd]
        assert mine["error"] is None and mine["iops"] > 0, mine
        assert 0 < mine["p50_us"] <= mine["p99_us"], mine
        assert mine["ops"] >= qd and mine["stall_ms"] >= 0, mine
        assert mine["threads"] == 0, f"kernaio ran threads beside the loop's: {mine['thread_names']}"
        peer = rows["asyncio.to_thread(os.preadv)", qd]
        assert peer["threads"] and peer["threads"] > 0, f"to_thread's pool threads were not seen: {peer}"
        ratio = doc["ratios"]["asyncio.to_thread(os.preadv)"][str(qd)]
        assert ratio == pytest.approx(mine["iops"] / peer["iops"], rel=0.01)
        alone = rows["asyncio alone (no I/O)", qd]    # the reference row: no file, no thread
        assert alone["mode"] == "no I/O" and alone["threads"] == 0 and alone["iops"] > 0, alone
        on_uvloop = rows["kernaio (uvloop)", qd]
        assert on_uvloop["error"] is None and on_uvloop["threads"] == 0, on_uvloop
    assert {t["ok"] for t in doc["targets"]} <= {True, False, None}
    assert len(doc["targets"]) == 5 and doc["targets"][4]["ok"] is None   # --quick: nothing-lost not run
    assert len(doc["idle_loop_stall_samples_ms"]) == len(doc["config"]["depths"]) + 1


def test_fio_rows_are_read_from_its_json(bench):
    doc = bench[2]
    for row in doc["rows"]:
        if row["api"].startswith("fio") and row["unavailable"] is None and row["error"] is None:
            assert row["iops"] > 0 and 0 < row["p50_us"] <= row["p99_us"], row
            assert row["threads"] is None and row["stall_ms"] is None, row
            assert 0 < row["cpu_pct"] <= 100, f"fio's own CPU (usr_cpu + sys_cpu) was not read: {row}"


def test_the_fio_and_cpu_targets_are_judged_on_the_median_of_rounds():
    """One run of each can land on a fast and a slow moment of a virtual disk: with several
    adjacent rounds, the targets take their median ratio (no measurement, pure arithmetic)."""
    from bench import report

    def row(api, iops, cpu_pct):
        return {"api": api, "qd": 32, "iops": iops, "cpu_pct": cpu_pct}

    def rnd(kernaio, sqpoll, fio=100.0):
        return {report.KERNAIO: row(report.KERNAIO, kernaio, kernaio / 10), report.SQPOLL: row(report.SQPOLL, sqpoll, 50.0),
                report.CEILING: row(report.CEILING, fio, 5.0), report.ALONE: row(report.ALONE, 1000.0, 10.0)}

    rows = list(rnd(30.0, 90.0).values())
    rounds = [rnd(30.0, 90.0), rnd(85.0, 105.0), rnd(90.0, 110.0)]   # kernaio/fio 0.30 (unlucky), 0.85, 0.90
    fio_target = report.targets(rows, (32,), rounds={32: rounds})[2]
    assert fio_target["ok"] is True and "kernaio / fio median 0.85 x of 3 rounds" in fio_target["measured"]
    assert "SQPOLL / fio median 1.05 x" in fio_target["measured"]
    assert report.targets(rows, (32,))[2]["ok"] is False            # the table's round alone: 0.30
    # CPU per read: kernaio 1 % / k IOPS... = 10 us per read (kernaio/10 % of iops), fio 0.5 + asyncio 0.1 us
    cpu = report.targets(rows, (32,), rounds={32: rounds})[0]
    assert cpu["ok"] is False and cpu["value"] > report.CPU_FACTOR
    missing = [*rounds[:2], {**rounds[2], report.CEILING: None}]
    assert "of 2 rounds" in report.targets(rows, (32,), rounds={32: missing})[2]["measured"]


def test_the_peer_target_takes_the_median_of_the_closest_pairs_rounds():
    """kernaio against its strongest peer at a QD: one unlucky run is outvoted by two more."""
    from bench import report
    peer = "aiofiles"
    rows = [{"api": report.KERNAIO, "qd": 8, "iops": 70.0}, {"api": peer, "qd": 8, "iops": 100.0},
            {"api": "asyncio.to_thread(os.preadv)", "qd": 8, "iops": 10.0},
            {"api": report.SQPOLL, "qd": 8, "iops": 110.0}, {"api": report.CAIO_URING, "qd": 8, "iops": 90.0}]
    assert report.strongest_peer(rows, 8) == peer
    assert report.rounded_apis(rows, 8) == [report.KERNAIO, peer, report.SQPOLL, report.CAIO_URING]
    judged = report.targets(rows, (8,))[1]
    assert judged["ok"] is False and "0.70 x (aiofiles, QD 8)" in judged["measured"]   # the table alone

    def rnd(mine: float) -> dict[str, dict[str, object] | None]:
        return {report.KERNAIO: {"iops": mine}, peer: {"iops": 100.0}, report.SQPOLL: {"iops": 110.0},
                report.CAIO_URING: {"iops": 90.0}}
    judged = report.targets(rows, (8,), rounds={8: [rnd(70.0), rnd(120.0), rnd(125.0)]})[1]
    assert judged["ok"] is True and "1.20 x (aiofiles, QD 8)" in judged["measured"], judged


def test_the_stall_target_takes_the_worst_idle_floor_of_the_run():
    from bench import report
    rows = [{"api": report.KERNAIO, "qd": qd, "iops": 1.0, "stall_ms": stall} for qd, stall in ((1, 0.4), (128, 2.5))]
    assert report.targets(rows, (1, 128), floors=[0.3, 0.5])[3]["ok"] is False     # 2.5 > max(1, 0.75)
    judged = report.targets(rows, (1, 128), floors=[0.3, 2.0])[3]                   # 2.5 <= 1.5 x 2.0
    assert judged["ok"] is True and "worst 2.50 ms (QD 128) against 3.00 ms" in judged["measured"]
