"""write_report_events: what lands in the events file, read back with TensorBoard's own loader."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing import io_wrapper
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

from analysis.tensorboard import profiler_plugin as tbplugin
from analysis.records import DeviceView, RunAnalysis, StepBreakdown, TraceAnalysis
from analysis.view.model import build_report
from analysis.tensorboard.events import REPORT_EVENTS_NAME, breakdown_tags, write_report_events
from analysis.view.reportview import Item, ReportView, build_view
from profiler.contract.vocab import CATEGORIES, COMMUNICATION, COMPUTE, IDLE

REPO = Path(__file__).resolve().parents[1]
T0 = 1.75e15   # µs since the Unix epoch (2025), as a trace's absolute clock gives


def _step(n: int, compute_us: float, comm_us: float, idle_us: float) -> StepBreakdown:
    parts = {c: 0.0 for c in CATEGORIES}
    parts.update({COMPUTE: compute_us, COMMUNICATION: comm_us, IDLE: idle_us})
    start = T0 + n * 100_000
    return StepBreakdown(step=n, start_us=start, end_us=start + sum(parts.values()), parts_us=parts)


def _run(tmp_path: Path, scale: float = 1.0) -> RunAnalysis:
    """Two ranks, profiled steps 2..4; rank1 is slower, so means and per-worker walls differ."""
    traces = []
    for worker, slow in (("rank0", 1.0), ("rank1", 3.0)):
        steps = [_step(n, 6000 * scale, 2000 * slow, 2000) for n in (2, 3, 4)]
        wall = sum(s.wall_us for s in steps)
        devices = [DeviceView(device="cpu", pid=10, index=-1, wall_us=wall, compute_us=18000 * scale,
                              communication_us=6000 * slow, h2d_us=0.0, idle_us=6000)]
        traces.append(TraceAnalysis(path=tmp_path / f"{worker}.1.pt.trace.json.gz", worker=worker, has_gpu=False,
                                    steps=steps, devices=devices, phase_totals_us={}, memcpy=[]))
    return RunAnalysis(run_dir=tmp_path, name="ddp-2cpu-b16", run=None, traces=traces)


def view_of(run: RunAnalysis) -> ReportView:
    """The run's part of its report's view, as `python -m analysis.report --tensorboard` hands it over."""
    return build_view(build_report([run])).for_run(run.name)


def items_view(*items: tuple[int, str], name: str = "ddp-2cpu-b16") -> ReportView:
    return ReportView("t", [], [Item(n, "idle", name, text) for n, text in items], [], [], [])


def _read(path: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    texts: dict[str, str] = {}
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            array = tensor_util.make_ndarray(value.tensor)
            if plugin == "scalars":
                scalars.setdefault(value.tag, []).append((event.step, float(array)))
            elif plugin == "text":
                texts[value.tag] = array.item().decode("utf-8")
    return scalars, texts


def test_breakdown_scalars_per_profiler_step(tmp_path: Path) -> None:
    path = write_report_events(_run(tmp_path), items_view((1, "replicate costs 4 ms")))
    assert path == tmp_path / REPORT_EVENTS_NAME
    scalars, _ = _read(path)
    for tag in breakdown_tags():
        assert [step for step, _ in scalars[tag]] == [2, 3, 4], tag
    # mean over the two ranks: communication 2 ms and 6 ms -> 4 ms; rank walls 10 ms and 14 ms
    assert scalars["breakdown/communication_ms"][0][1] == pytest.approx(4.0)
    assert scalars["breakdown/compute_ms"][0][1] == pytest.approx(6.0)
    assert scalars["breakdown/communication_pct"][0][1] == pytest.approx((20.0 + 100 * 6 / 14) / 2, rel=1e-5)
    pct_sum = sum(scalars[f"breakdown/{c}_pct"][1][1] for c in CATEGORIES)
    assert pct_sum == pytest.approx(100.0, rel=1e-5)
    assert scalars["step/rank0_ms"] == [(2, 10.0), (3, 10.0), (4, 10.0)]
    assert scalars["step/rank1_ms"][0][1] == pytest.approx(14.0)


def _breakdown_walls(path: Path) -> dict[int, float]:
    return {e.step: e.wall_time for e in EventFileLoader(str(path)).Load()
            if any(v.tag.startswith("breakdown/") for v in e.summary.value)}


def test_wall_times_follow_the_trace(tmp_path: Path) -> None:
    run = _run(tmp_path)
    walls = _breakdown_walls(write_report_events(run, items_view()))
    assert walls == {n: pytest.approx((T0 + n * 100_000) / 1e6) for n in (2, 3, 4)}   # absolute µs used as they are
    # relative trace times: anchored on the trace file's mtime, which is when the last step had ended
    for trace in run.traces:
        for s in trace.steps:
            s.start_us -= T0
            s.end_us -= T0
        trace.path.write_bytes(b"{}")
        os.utime(trace.path, (1.7e9, 1.7e9))
    walls = _breakdown_walls(write_report_events(run, items_view()))
    last_end_rank1 = 4 * 100_000 + 14_000
    assert walls[4] - walls[2] == pytest.approx(0.2)
    assert walls[4] == pytest.approx(1.7e9 - (last_end_rank1 - 4 * 100_000) / 1e6)


def test_device_busy_and_text_from_the_report_view(tmp_path: Path) -> None:
    run = _run(tmp_path)
    view = view_of(run)
    scalars, texts = _read(write_report_events(run, view))
    # rank0: idle 6 of 30 ms -> 80 % busy; rank1: idle 6 of 42 ms
    assert scalars["device_busy_pct/rank0/cpu"] == [(4, pytest.approx(80.0))]
    assert scalars["device_busy_pct/rank1/cpu"][0][1] == pytest.approx(100 * 36 / 42, rel=1e-5)
    assert view.findings, "the synthetic run has findings (communication is 20-43 % of the step)"
    assert texts["report/findings"] == "\n\n".join(f"{f.number}\\. {f.text}" for f in view.findings)
    summary = texts["report/summary"]
    assert summary.startswith("## scalescope report") and "| ddp-2cpu-b16 | ddp | 2 cpu | 16 |" in summary
    assert "| ddp-2cpu-b16 | rank0 cpu | 80 | 60 | 20 | 20 |" in summary       # the report's per-device row


def test_rerun_replaces_its_own_file(tmp_path: Path) -> None:
    runner_file = tmp_path / "events.out.tfevents.1700000000.host.1.0"
    runner_file.write_bytes(b"")   # the runner's SummaryWriter file must be left alone
    write_report_events(_run(tmp_path), items_view((1, "first")))
    path = write_report_events(_run(tmp_path, scale=2.0), items_view((1, "second")))
    event_files = sorted(p.name for p in tmp_path.iterdir() if io_wrapper.IsSummaryEventsFile(str(p)))
    assert event_files == sorted([runner_file.name, REPORT_EVENTS_NAME])
    assert sorted(p.name for p in tmp_path.iterdir()) == event_files   # no partial file left behind
    scalars, texts = _read(path)
    assert len(scalars["breakdown/compute_ms"]) == 3
    assert scalars["breakdown/compute_ms"][0][1] == pytest.approx(12.0)
    assert texts["report/findings"] == "1\\. second"


def test_findings_keep_the_reports_own_numbers(tmp_path: Path) -> None:
    _, texts = _read(write_report_events(_run(tmp_path), items_view((3, "comm is 40 %"), (7, "idle is 20 %"))))
    assert texts["report/findings"] == "3\\. comm is 40 %\n\n7\\. idle is 20 %"


def test_out_dir_and_run_without_traces(tmp_path: Path) -> None:
    empty = RunAnalysis(run_dir=tmp_path / "run", name="single-1cpu-b16", run=None, traces=[],
                        errors=["single-1cpu-b16/rank0.pt.trace.json.gz: not a Kineto trace"])
    path = write_report_events(empty, view_of(empty), out_dir=tmp_path / "elsewhere")
    assert path == tmp_path / "elsewhere" / REPORT_EVENTS_NAME
    scalars, texts = _read(path)
    assert scalars == {}
    assert "No findings" in texts["report/findings"]
    assert "not a Kineto trace" in texts["report/summary"]


def test_gpu_devices_are_named_by_index_and_never_merged(tmp_path: Path) -> None:
    run = _run(tmp_path)
    trace = run.traces[0]
    trace.devices = [DeviceView(f"pid 10 gpu {i}", 10, i, 30000, 20000 - 5000 * i, 1000, 500, 5000 + 5000 * i)
                     for i in (0, 1)]
    scalars, _ = _read(write_report_events(run, items_view()))
    assert scalars["device_busy_pct/rank0/gpu0"][0][1] == pytest.approx(100 * 25 / 30, rel=1e-5)
    assert scalars["device_busy_pct/rank0/gpu1"][0][1] == pytest.approx(100 * 20 / 30, rel=1e-5)


def test_modules_are_torch_free() -> None:
    code = ("import sys, analysis.tensorboard, analysis.tensorboard.profiler_plugin; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'models')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("version", "expect"), [
    ("0.4.3", "torch-tb-profiler 0.4.3"),
    ("0.4.1", "torch-tb-profiler 0.4.1"),
    ("0.5.0", None),
    ("1.0.0rc1", None),
])
def test_plugin_note_for_version(version: str, expect: str | None) -> None:
    note = tbplugin.note_for_version(version)
    if expect is None:
        assert note is None
    else:
        assert note is not None and expect in note


@pytest.mark.parametrize(("installed", "expect"), [(None, None), ("0.4.3", "DataLoader 0 %"), ("0.5.0", None)])
def test_plugin_note_follows_the_installed_metadata(monkeypatch: pytest.MonkeyPatch, installed: str | None,
                                                    expect: str | None) -> None:
    """Not installed: no note (there is no PyTorch Profiler tab to distrust); 0.4.3: the warning, naming it."""
    from importlib import metadata

    def version(dist: str) -> str:
        assert dist == "torch-tb-profiler"
        if installed is None:
            raise metadata.PackageNotFoundError(dist)
        return installed

    monkeypatch.setattr(tbplugin.metadata, "version", version)
    note = tbplugin.plugin_note()
    assert note is None if expect is None else (expect in note and f"torch-tb-profiler {installed}" in note)
