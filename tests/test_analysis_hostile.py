"""Inputs that used to hang or crash the whole report: FIFOs and links named like traces, JSON nested
thousands deep, values past int64 and float range. Each is that file's one line; the other runs are
still explained; nothing blocks (the report runs as a subprocess with a bound on its time)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.step.breakdown import analyse_trace
from analysis.trace.errors import TraceError
from builders.kineto import step_event, x_event
from profiler.contract.runfiles import NotRegularFile, is_regular, open_regular
from profiler.contract.runjson import RunJsonError, read_run_json
from profiler.contract.samples import SamplesError, read_samples

REPO = Path(__file__).resolve().parents[1]
GOOD = REPO / "tests" / "data" / "cpu_single_tiny.pt.trace.json.gz"
DEEP = 3000


def _hostile_tree(root: Path) -> None:
    good = root / "good"
    good.mkdir(parents=True)
    shutil.copy(GOOD, good / "rank0.1.pt.trace.json.gz")
    deep = root / "deep"
    deep.mkdir()
    nested = "[" * DEEP + "]" * DEEP
    (deep / "rank0.1.pt.trace.json").write_text(
        '{"traceEvents": [' + json.dumps(step_event())[:-1] + ', "args": {"x": ' + nested + "}}]}")
    fifo = root / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "rank0.1.pt.trace.json")
    links = root / "links"
    links.mkdir()
    (links / "rank0.1.pt.trace.json").symlink_to("nowhere")
    (links / "rank0.2.pt.trace.json.gz").symlink_to("rank0.2.pt.trace.json.gz")      # a loop of one


def test_a_good_run_beside_a_deep_trace_a_fifo_and_broken_links_is_still_explained(tmp_path: Path) -> None:
    _hostile_tree(tmp_path / "traces")
    res = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "traces"), "--format", "json",
                          "--no-html", "--out", str(tmp_path / "report")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    summary = json.loads(res.stdout)
    runs = {Path(r["run_dir"]).name if "run_dir" in r else r["name"]: r for r in summary["runs"]}
    good = runs["good"]
    assert good["strategy"] == "single" and good["shares"]["compute"] > 0 and not good["errors"]
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    t = tmp_path / "traces"
    assert sorted(e.split("error: ", 1)[1] for e in errors) == sorted([
        f"{t}/deep/rank0.1.pt.trace.json: JSON nested too deeply to decode",
        f"{t}/fifo/rank0.1.pt.trace.json: cannot read (not a regular file: a FIFO)",
        f"{t}/links/rank0.1.pt.trace.json: a broken symbolic link (to nowhere)",
        f"{t}/links/rank0.2.pt.trace.json.gz: cannot read (Too many levels of symbolic links)",
    ])


def test_run_json_and_samples_that_are_fifos_or_nested_deep_are_one_line(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "run.json")
    with pytest.raises(RunJsonError, match="cannot read run.json \\(not a regular file: a FIFO\\)"):
        read_run_json(tmp_path / "run.json")
    deep = tmp_path / "deep.json"
    deep.write_text('{"name": ' + "[" * DEEP + "]" * DEEP + "}")
    with pytest.raises(RunJsonError, match="nested too deeply"):
        read_run_json(deep)
    os.mkfifo(tmp_path / "samples.csv")
    with pytest.raises(SamplesError, match="not a regular file: a FIFO"):
        read_samples(tmp_path / "samples.csv")
    assert read_samples(tmp_path / "absent.csv") == []


def test_open_regular_follows_links_to_files_and_refuses_everything_else(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    (tmp_path / "to-f").symlink_to("f")
    with open_regular(tmp_path / "to-f") as fh:
        assert fh.read() == b"abc"
    os.mkfifo(tmp_path / "p")
    with pytest.raises(NotRegularFile, match="a FIFO"):
        open_regular(tmp_path / "p")
    with pytest.raises(NotRegularFile, match="a directory"):
        open_regular(tmp_path)
    with pytest.raises(NotRegularFile, match="a character device"):
        open_regular("/dev/null")
    assert [is_regular(p) for p in (f, tmp_path / "to-f", tmp_path / "p", tmp_path / "gone")] == [
        True, True, False, False]


def test_a_pid_past_int64_is_kept_as_text_and_events_past_the_time_range_are_dropped(tmp_path: Path) -> None:
    events = [step_event(pid=2**63), x_event(pid=2**63, ts=20, dur=30),
              x_event(ts=1e308, dur=1), x_event(ts=40, dur=1e308),                 # dropped, not summed
              x_event(tid=-2**70, args={"device": 1e308, "correlation": 2**64}, ts=50, dur=10)]
    p = tmp_path / "rank0.1.pt.trace.json"
    p.write_text(json.dumps({"traceEvents": events}))
    a = analyse_trace(p)
    [step] = a.steps
    assert step.wall_us == 100
    assert step.parts_us["compute"] == pytest.approx(40)      # the two in-range ops: 30 + 10 µs
    p.write_text(json.dumps({"traceEvents": [step_event(ts=1e308, dur=1e308)]}))
    with pytest.raises(TraceError, match="no timed events .* \\(1 with timestamps or durations out of range\\)"):
        analyse_trace(p)
