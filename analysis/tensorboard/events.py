"""Our own numbers in TensorBoard's built-in dashboards (Scalars, Text), which work offline.

The PyTorch Profiler plugin's Overview is wrong on torch 2.x traces (see
docs/tensorboard.md), so the report writes the measured step breakdown, per-device busy
share and the run's part of the report view (findings, table rows, notes) into one events file
per run folder; the text is rendered from the same view as the terminal and HTML report. The file has a fixed name, so
re-running the report replaces it instead of adding a second copy of every series.

Torch-free: only the tensorboard package's record writer and protos are used.
"""
from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter

from analysis.records import DeviceView, RunAnalysis, StepBreakdown, TraceAnalysis
from analysis.view.render import findings_markdown, render_markdown
from analysis.view.reportview import ReportView
from profiler.contract.vocab import CATEGORIES

# "tfevents" must stay in the name: TensorBoard (both loaders) only reads files containing it.
# It sorts after the runner's "events.out.tfevents.<digits>..." files, so the legacy loader,
# which walks a run's event files in name order, reaches it last.
REPORT_EVENTS_NAME = "events.out.tfevents.scalescope-report"
_PARTIAL_PREFIX = ".scalescope-report."   # no "tfevents": a live server must not read it half-written

BREAKDOWN = "breakdown"          # breakdown/<category>_ms, breakdown/<category>_pct (mean over workers)
STEP = "step"                    # step/<worker>_ms: each worker's own step wall time
DEVICE_BUSY = "device_busy_pct"  # device_busy_pct/<worker>/<device>: one point per device
TEXT_FINDINGS = "report/findings"
TEXT_SUMMARY = "report/summary"

_UNIX_EPOCH_US_2001 = 1e15       # trace times above this are Unix-epoch µs, usable as wall time


def breakdown_tags() -> list[str]:
    """Every breakdown tag written for a run, in category order (ms then % per category)."""
    return [f"{BREAKDOWN}/{c}_{unit}" for c in CATEGORIES for unit in ("ms", "pct")]


def write_report_events(run: RunAnalysis, view: ReportView, out_dir: Path | None = None) -> Path:
    """Write `run`'s breakdown scalars and its report view (ReportView.for_run) to `<out_dir>/REPORT_EVENTS_NAME`.

    out_dir defaults to the run folder (so `tensorboard --logdir traces` shows it under the
    same run as the traces). The file is written aside and renamed over the old one, so a
    server reading the folder never sees a half-written or doubled file.
    """
    folder = Path(out_dir) if out_dir is not None else Path(run.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{_PARTIAL_PREFIX}{os.getpid()}.partial"
    target = folder / REPORT_EVENTS_NAME
    try:
        with open(partial, "wb") as fh:
            writer = RecordWriter(fh)
            for event in _events(run, view):
                writer.write(event.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


# --- what goes in ------------------------------------------------------------------------

def _events(run: RunAnalysis, view: ReportView) -> Iterator[event_pb2.Event]:
    now = time.time()
    yield event_pb2.Event(wall_time=now, file_version="brain.Event:2")
    last_step = 0
    for step, wall, values in _breakdown_points(run.traces, now):
        last_step = max(last_step, step)
        yield _scalar_event(step, wall, values)
    device_values = {tag: v for tag, v in _device_busy(run.traces)}
    if device_values:
        yield _scalar_event(last_step, now, device_values)
    yield _text_event(TEXT_FINDINGS, findings_markdown(view), now)
    yield _text_event(TEXT_SUMMARY, render_markdown(view, level=2), now)


def _breakdown_points(traces: list[TraceAnalysis], now: float) -> Iterator[tuple[int, float, dict[str, float]]]:
    """Per ProfilerStep number: the workers' mean breakdown (ms and %), each worker's wall, a wall time."""
    by_step: dict[int, list[tuple[TraceAnalysis, StepBreakdown]]] = defaultdict(list)
    for trace in traces:
        for s in trace.steps:
            by_step[s.step].append((trace, s))
    for step in sorted(by_step):
        entries = by_step[step]
        values: dict[str, float] = {}
        for c in CATEGORIES:
            ms = [s.parts_us.get(c, 0.0) / 1e3 for _, s in entries]
            pct = [100.0 * s.share(c) for _, s in entries]
            values[f"{BREAKDOWN}/{c}_ms"] = sum(ms) / len(ms)
            values[f"{BREAKDOWN}/{c}_pct"] = sum(pct) / len(pct)
        for trace, s in entries:
            values[f"{STEP}/{_tag_part(trace.worker)}_ms"] = s.wall_us / 1e3
        yield step, min(_wall_time(t, s, now) for t, s in entries), values


def _wall_time(trace: TraceAnalysis, step: StepBreakdown, now: float) -> float:
    """Unix seconds of a step's start, so TensorBoard's Wall/Relative axes space steps truly.

    Absolute trace times are used as they are; relative ones are anchored on the trace file's
    mtime (written just after the last profiled step ended); `now` when neither is known.
    """
    if step.start_us > _UNIX_EPOCH_US_2001:
        return step.start_us / 1e6
    try:
        written = Path(trace.path).stat().st_mtime
    except OSError:
        return now
    last_end = max(s.end_us for s in trace.steps)
    return written - (last_end - step.start_us) / 1e6


def _device_busy(traces: list[TraceAnalysis]) -> Iterator[tuple[str, float]]:
    for trace in traces:
        for dev in trace.devices:
            if dev.wall_us > 0:
                yield f"{DEVICE_BUSY}/{_tag_part(trace.worker)}/{device_label(dev, trace.devices)}", busy_pct(dev)


def busy_pct(dev: DeviceView) -> float:
    """Share of the measured wall time this device was doing anything (100 − idle %)."""
    return 100.0 * max(0.0, dev.wall_us - dev.idle_us) / dev.wall_us if dev.wall_us > 0 else 0.0


def device_label(dev: DeviceView, peers: Iterable[DeviceView] = ()) -> str:
    """Short stable name: "gpu<index>" (pid added only if two processes share an index), else "cpu"."""
    if dev.index < 0:
        return _tag_part(dev.device)
    clash = sum(1 for p in peers if p.index == dev.index) > 1
    return f"gpu{dev.index}" + (f"_pid{dev.pid}" if clash else "")


def _tag_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "unnamed"


# --- protos ------------------------------------------------------------------------------

_SCALAR_META = scalar_metadata.create_summary_metadata(display_name="", description="")
_TEXT_META = text_metadata.create_summary_metadata(display_name="", description="")
_SCALAR_SHAPE = tensor_shape_pb2.TensorShapeProto()


def _scalar_event(step: int, wall_time: float, values: dict[str, float]) -> event_pb2.Event:
    summary = summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(
                tag=tag,
                metadata=_SCALAR_META,
                tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_SCALAR_SHAPE, float_val=[v]),
            )
            for tag, v in values.items()
        ]
    )
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary)


def _text_event(tag: str, markdown: str, wall_time: float) -> event_pb2.Event:
    value = summary_pb2.Summary.Value(
        tag=tag,
        metadata=_TEXT_META,
        tensor=tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=_SCALAR_SHAPE, string_val=[markdown.encode("utf-8")]
        ),
    )
    return event_pb2.Event(wall_time=wall_time, step=0, summary=summary_pb2.Summary(value=[value]))
