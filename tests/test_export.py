"""`python -m analysis.export`: one merged Chrome-trace timeline of a run, checked on real torch.profiler traces.

Figures (tests/data, 2 ranks of a gloo DDP run on CPU, ProfilerStep#2 and #3 each): the export has one
process per rank, each rank's ProfilerStep durations and relative start times equal the source files'
to 1e-3 µs, and scalescope's "step breakdown" spans of each rank sum, per step and category, to the
breakdown's parts_us of that step (within 1 ns per piece: every span end is rounded to the ns so the
pieces of a track still tile). Exporting 8 ranks peaks below 2x the tracemalloc peak of 2 ranks.
"""
from __future__ import annotations

import gc
import gzip
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from collections import defaultdict
from pathlib import Path

import pytest

from analysis.export.cli import main
from analysis.step.breakdown import analyse_trace
from analysis.trace.reader import read_trace
from profiler.contract import vocab

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
RANKS = [DATA / "ddp_gloo_rank0_tiny.pt.trace.json.gz", DATA / "ddp_gloo_rank1_tiny.pt.trace.json.gz"]
GPU_ANCHOR = REPO.parent / "shared/anchors/tb_plugin/resnet50_num_workers_0/worker0.1623143089861.pt.trace.json.gz"


def _run_folder(root: Path, n_ranks: int = 2, name: str = "ddp-2cpu-b8") -> Path:
    run = root / name
    run.mkdir(parents=True)
    for r in range(n_ranks):
        shutil.copy(RANKS[r % 2], run / f"rank{r}.1.pt.trace.json.gz")
    return run


def _export(run: Path, out: Path, *extra: str) -> dict:
    assert main([str(run), "--out", str(out), "--progress", "off", *extra]) == 0
    with (gzip.open(out) if out.name.endswith(".gz") else open(out, "rb")) as f:
        return json.load(f)


def _source_events(path: Path) -> tuple[dict, list[dict]]:
    with gzip.open(path) as f:
        doc = json.load(f)
    return doc, [e for e in doc["traceEvents"] if e.get("ph") == "X"]


def _steps(events: list[dict]) -> dict[str, tuple[float, float]]:
    return {e["name"]: (e["ts"], e["dur"]) for e in events if e["name"].startswith(vocab.TORCH_PROFILER_STEP)}


def _thread_names(doc: dict) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


@pytest.fixture
def ddp_run(tmp_path: Path) -> Path:
    return _run_folder(tmp_path)


def test_one_process_per_rank_on_one_clock(ddp_run: Path, tmp_path: Path) -> None:
    doc = _export(ddp_run, tmp_path / "merged.json")
    assert doc["displayTimeUnit"] == "ms"
    events = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert sorted(procs) == [0, 1]
    assert procs[0].startswith("rank0 (pid ") and procs[1].startswith("rank1 (pid ")
    xs = [e for e in events if e["ph"] == "X"]
    assert min(e["ts"] for e in xs) == 0.0
    assert all(e["dur"] >= 0 and isinstance(e["pid"], int) and isinstance(e["tid"], int) for e in xs)
    # every event's thread is named, and each process's own threads keep their source thread ids
    names = _thread_names(doc)
    assert {(e["pid"], e["tid"]) for e in xs} <= set(names)

    sources = [_source_events(p) for p in RANKS]
    exported = {pid: _steps([e for e in xs if e["pid"] == pid and e["cat"] not in ("scalescope", "scalescope_phase")])
                for pid in (0, 1)}
    for pid, (src_doc, src) in enumerate(sources):
        want = _steps(src)
        assert sorted(exported[pid]) == sorted(want) == ["ProfilerStep#2", "ProfilerStep#3"]
        for step, (_, dur) in want.items():
            assert exported[pid][step][1] == pytest.approx(dur, abs=1e-3)
        host_pid = next(e["pid"] for e in src if e["name"].startswith("ProfilerStep#"))
        assert procs[pid] == f"rank{pid} (pid {host_pid})"
        assert f"thread {host_pid}" in {n for (p, _), n in names.items() if p == pid}
    # the same clock: rank 1's steps start as much after rank 0's as they did in the sources (same base time)
    base0, base1 = (d["baseTimeNanoseconds"] for d, _ in sources)
    for step in ("ProfilerStep#2", "ProfilerStep#3"):
        src_gap = (base1 - base0) / 1000 + _steps(sources[1][1])[step][0] - _steps(sources[0][1])[step][0]
        assert exported[1][step][0] - exported[0][step][0] == pytest.approx(src_gap, abs=1e-3)
    first = min(base + min(e["ts"] for e in s) * 1000 for base, s in zip((base0, base1), (s for _, s in sources)))
    assert doc["baseTimeNanoseconds"] == pytest.approx(first, abs=1)


def test_reread_by_our_reader(ddp_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged.json.gz"
    _export(ddp_run, out)
    tr = read_trace(out)
    assert sorted(tr.pids) == [0, 1]
    for pid, src_path in enumerate(RANKS):
        src = read_trace(src_path)
        def durations(t, pid_code=None):
            return {t.names[t.name[i]]: float(t.dur[i]) for i in range(len(t))
                    if t.names[t.name[i]].startswith("ProfilerStep#") and t.cats[t.cat[i]] != "scalescope"
                    and (pid_code is None or t.pid[i] == pid_code)}
        got, want = durations(tr, tr.pids.index(pid)), durations(src)
        assert sorted(got) == sorted(want) == ["ProfilerStep#2", "ProfilerStep#3"]
        for step in want:
            assert got[step] == pytest.approx(want[step], abs=1e-3)
    assert tr.base_time_ns is not None and tr.t0_us == 0.0


def _check_spans(doc: dict, sources: list[Path]) -> None:
    """Per rank: the 'step breakdown' spans sum to analyse_trace's parts_us per step and category, tile the
    step window (no overlaps) and add up to its wall time."""
    names = _thread_names(doc)
    spans: dict[int, list[dict]] = defaultdict(list)
    for e in doc["traceEvents"]:
        if e["ph"] == "X" and e["cat"] == "scalescope":
            spans[e["pid"]].append(e)
    for pid, path in enumerate(sources):
        ta = analyse_trace(path)
        assert ta.steps
        track = [e for e in spans[pid] if names[(pid, e["tid"])] == "scalescope: step breakdown"]
        assert {e["name"] for e in track} <= set(vocab.CATEGORIES)
        for st in ta.steps:
            mine = sorted((e for e in track if e["args"]["step"] == st.step), key=lambda e: e["ts"])
            assert mine, f"no spans for step {st.step}"
            for a, b in zip(mine, mine[1:]):
                assert b["ts"] >= a["ts"] + a["dur"] - 1e-6       # exclusive: pieces never overlap
            tol = 1e-3 * (len(mine) + 2)                          # each piece's ends rounded to the ns
            assert sum(e["dur"] for e in mine) == pytest.approx(st.wall_us, abs=tol)
            for c in vocab.CATEGORIES:
                got = sum(e["dur"] for e in mine if e["name"] == c)
                assert got == pytest.approx(st.parts_us[c], abs=tol), (pid, st.step, c)


def test_breakdown_spans_sum_to_the_breakdown(ddp_run: Path, tmp_path: Path) -> None:
    doc = _export(ddp_run, tmp_path / "merged.json")
    _check_spans(doc, RANKS)
    phases = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == "scalescope_phase"]
    assert {e["name"] for e in phases} >= {vocab.FORWARD, vocab.LOSS, vocab.BACKWARD, vocab.OPTIMIZER}
    assert {e["pid"] for e in phases} == {0, 1}
    # communication (gloo all-reduce) is on both ranks' step tracks
    assert {e["pid"] for e in doc["traceEvents"] if e.get("cat") == "scalescope" and e["name"] == "communication"} == {0, 1}


def test_single_cpu_trace_and_phases(tmp_path: Path) -> None:
    run = tmp_path / "single-1cpu-b4"
    run.mkdir()
    shutil.copy(DATA / "cpu_single_tiny.pt.trace.json.gz", run / "worker0.1.pt.trace.json.gz")
    doc = _export(run, tmp_path / "one.json")
    _check_spans(doc, [DATA / "cpu_single_tiny.pt.trace.json.gz"])
    names = {e["name"] for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == "scalescope_phase"}
    assert names == set(vocab.TRAIN_STEP_PHASES)


@pytest.mark.skipif(not GPU_ANCHOR.exists(), reason="../shared/anchors (real GPU traces) not present in this checkout")
def test_gpu_trace_streams_and_device_track(tmp_path: Path) -> None:
    run = tmp_path / "single-1gpu-b32"
    run.mkdir()
    shutil.copy(GPU_ANCHOR, run / GPU_ANCHOR.name)
    doc = _export(run, tmp_path / "gpu.json.gz")
    names = set(_thread_names(doc).values())
    assert "gpu 0 stream 7" in names and "scalescope: gpu 0 breakdown" in names
    _check_spans(doc, [GPU_ANCHOR])


def test_gzip_output_is_the_same_json(ddp_run: Path, tmp_path: Path) -> None:
    plain, packed = tmp_path / "m.json", tmp_path / "m.json.gz"
    _export(ddp_run, plain)
    _export(ddp_run, packed)
    raw = packed.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert gzip.decompress(raw) == plain.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]      # no temp or spill files left


def test_output_next_to_the_traces_is_not_read_back(ddp_run: Path, tmp_path: Path) -> None:
    out = ddp_run / "merged.pt.trace.json.gz"
    first = _export(ddp_run, out)
    again = _export(ddp_run, out)
    assert first == again


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.export", *args], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m analysis.export: error: "), p.stderr
    return lines[0]


def test_errors_are_one_line(ddp_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    assert str(tmp_path / "nope") in _one_line_error(_cli(str(tmp_path / "nope"), "--out", str(out)))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no traces" in _one_line_error(_cli(str(empty), "--out", str(out)))
    assert "does not exist" in _one_line_error(_cli(str(ddp_run), "--out", str(tmp_path / "no/such/m.json")))
    (tmp_path / "afile").write_text("x")
    assert "is not a folder" in _one_line_error(_cli(str(ddp_run), "--out", str(tmp_path / "afile/m.json")))
    bad = ddp_run / "rank1.1.pt.trace.json.gz"
    bad.write_bytes(bad.read_bytes()[:2000])                          # a truncated gzip
    line = _one_line_error(_cli(str(ddp_run), "--out", str(out)))
    assert str(bad) in line and "corrupt or truncated" in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unwritable_output_folder(ddp_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:                 # root writes anywhere: the check is os.access, so ask it to say no
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real(p, mode, **kw))
        assert main([str(ddp_run), "--out", str(locked / "m.json")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "not writable" in err
        return
    locked.chmod(0o500)
    try:
        assert "not writable" in _one_line_error(_cli(str(ddp_run), "--out", str(locked / "m.json")))
    finally:
        locked.chmod(0o700)


def test_help_explains() -> None:
    p = _cli("--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for word in ("RUN", "--out", ".json.gz", "baseTimeNanoseconds", "perfetto", "step breakdown", "--progress"):
        assert word in text


def test_progress_bar_for_many_ranks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_folder(tmp_path, 6, "ddp-6cpu-b24")
    assert main([str(run), "--out", str(tmp_path / "m.json")]) == 0
    err = capsys.readouterr().err
    assert "read:" in err and "write:" in err, err


def _peak(run: Path, out: Path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        assert main([str(run), "--out", str(out), "--progress", "off"]) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_ranks(tmp_path: Path) -> None:
    two = _run_folder(tmp_path / "a", 2, "ddp-2cpu-b8")
    eight = _run_folder(tmp_path / "b", 8, "ddp-8cpu-b32")
    _peak(two, tmp_path / "warm.json")                     # imports and caches out of the way
    p2 = _peak(two, tmp_path / "two.json")
    p8 = _peak(eight, tmp_path / "eight.json")
    with open(tmp_path / "eight.json") as f:
        doc = json.load(f)
    assert len({e["pid"] for e in doc["traceEvents"]}) == 8
    print(f"tracemalloc peak: 2 ranks {p2 / 2**20:.2f} MiB, 8 ranks {p8 / 2**20:.2f} MiB")
    assert p8 < 2 * p2
    assert p8 < 16 * 2**20                                 # one tiny trace at a time: well under 16 MiB
