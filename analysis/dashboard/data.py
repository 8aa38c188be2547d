"""The dashboard's JSON: the report over every run folder under the logdir, each run analysed once per change.

A run's analysis (reading its traces) is the expensive part and depends only on its own files, so
it is cached keyed by the (name, mtime_ns, size) of the files the analysis reads; the cross-run
report (speedups, findings, what-if) needs the runs together and is rebuilt from the cached
analyses, which costs milliseconds. A refresh after one new run therefore re-analyses that run only.
The numbers are analysis.report's own (to_summary, the report view), never recomputed here.
"""
from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.records import RunAnalysis
from profiler.contract import vocab

Signature = tuple[tuple[str, int, int], ...]
Analyser = Callable[[Path], RunAnalysis]

HOW_TO = ("No scalescope run folders (run.json or *.pt.trace.json[.gz]) under {logdir}. Make some with "
          "`make demo`, or one with `python -m models.train --strategy single --max-steps 20` (writes "
          "traces/<run>/), or profile your own script unchanged with `python -m profiler.attach -- python "
          "train.py`; then start `tensorboard --logdir traces`. New runs show up on TensorBoard's next reload.")
NO_LOGDIR = ("TensorBoard was started without a local --logdir ({what}): the scalescope dashboard reads run "
             "folders from one local folder, e.g. `tensorboard --logdir traces`.")


class UnknownRun(LookupError):
    """A run name that is not under the logdir; str() is one line naming the known runs."""


def signature(run_dir: Path) -> Signature:
    """(name, mtime_ns, size) of what the analysis reads: run.json, samples.csv and the traces.

    Event files and logs are left out: rewriting the report's own TensorBoard events must not
    trigger a re-analysis."""
    from analysis.run.discover import find_traces

    out = []
    for path in [run_dir / vocab.RUN_JSON, run_dir / vocab.SAMPLES_CSV, *find_traces(run_dir)]:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def tb_run_name(run_dir: Path, logdir: Path) -> str:
    """The run's name in TensorBoard: its folder relative to --logdir, "/"-separated, "." for the logdir itself."""
    rel = os.path.relpath(run_dir, logdir)
    return "." if rel == "." else rel.replace(os.sep, "/")


@dataclass
class _Entry:
    signature: Signature
    analysis: RunAnalysis


@dataclass
class Built:
    """One build of the dashboard from a set of cached analyses."""

    key: tuple[tuple[Path, Signature], ...]
    payload: dict[str, Any]
    runs: dict[str, RunAnalysis] = field(default_factory=dict)   # TensorBoard run name -> the report's copy


class RunCache:
    """Per-run analyses keyed by their files' signature, and the last dashboard built from them.

    analyse: the per-run analysis (analysis.run.analyse.analyse_run unless given; tests pass a counting
    wrapper around the real one). Thread-safe: TensorBoard serves requests on several threads.
    """

    def __init__(self, analyse: Analyser | None = None) -> None:
        self._analyse = analyse
        self._entries: dict[Path, _Entry] = {}
        self._built: Built | None = None
        self._lock = threading.Lock()

    def _run_one(self, run_dir: Path) -> RunAnalysis:
        if self._analyse is not None:
            return self._analyse(run_dir)
        from analysis.run.analyse import analyse_run
        return analyse_run(run_dir)

    def _refresh(self, logdir: Path) -> tuple[list[tuple[Path, Signature]], list[Path]]:
        """Bring the cache in line with the folders under logdir; returns (key, folders analysed now)."""
        from analysis.run.discover import discover_runs

        dirs = discover_runs([logdir]) if logdir.is_dir() else []
        key: list[tuple[Path, Signature]] = []
        fresh: list[Path] = []
        for d in dirs:
            try:
                sig = signature(d)
                entry = self._entries.get(d)
                if entry is None or entry.signature != sig:
                    self._entries[d] = _Entry(sig, self._run_one(d))
                    fresh.append(d)
            except OSError:          # the folder went away between the walk and the read
                self._entries.pop(d, None)
                continue
            key.append((d, sig))
        for gone in set(self._entries) - {d for d, _ in key}:
            del self._entries[gone]
        return key, fresh

    def build(self, logdir: Path) -> tuple[Built, list[str]]:
        """The dashboard for logdir now, and the TensorBoard names of the runs analysed for it."""
        logdir = logdir.resolve()
        with self._lock:
            key, fresh = self._refresh(logdir)
            if self._built is None or self._built.key != tuple(key):
                self._built = build_dashboard([self._entries[d].analysis for d, _ in key], logdir, tuple(key))
            return self._built, [tb_run_name(d, logdir) for d in fresh]

    def payload(self, logdir: Path) -> dict[str, Any]:
        """The `runs` route's JSON, with `analysed`: the runs (re-)analysed by this very call."""
        built, fresh = self.build(logdir)
        return {**built.payload, "analysed": fresh}

    def timeline(self, logdir: Path, run: str) -> dict[str, Any]:
        """One step's phase timeline lanes of one run (by TensorBoard name or report name); UnknownRun if absent."""
        built, _ = self.build(logdir)
        found = built.runs.get(run) or next((r for r in built.runs.values() if r.name == run), None)
        if found is None:
            known = ", ".join(sorted(built.runs)) or "none"
            raise UnknownRun(f"no run {run!r} under {logdir} (runs: {known})")
        return {"run": found.name, "tb_run": tb_run_name(found.run_dir, logdir.resolve()), **timeline_of(found)}


# --- building --------------------------------------------------------------------------------------

def _short(text: str, logdir: Path) -> str:
    """An error line with the logdir prefix dropped (the dashboard shows the logdir once)."""
    return text.replace(str(logdir) + os.sep, "")


def table_dict(t: Any) -> dict[str, Any]:
    return {"title": t.title, "header": list(t.header), "rows": [list(r) for r in t.rows], "footnote": t.footnote,
            "left": t.left}


def empty_payload(logdir: Path | None, message: str) -> dict[str, Any]:
    return {"logdir": str(logdir) if logdir is not None else "", "runs": [], "findings": [], "recommendations": [],
            "errors": [], "notes": [], "tables": [], "whatif": {"inputs": [], "rows": [], "summary": {}, "notes": []},
            "categories": list(vocab.CATEGORIES), "colours": {}, "phase_colours": [], "message": message}


def build_dashboard(analyses: Sequence[RunAnalysis], logdir: Path,
                    key: tuple[tuple[Path, Signature], ...] = ()) -> Built:
    """analysis.report over the cached analyses (copies: the report renames duplicates in place), as JSON."""
    from analysis.api import Analysis
    from analysis.palette import COLOURS, PHASE_COLOURS

    if not analyses:
        return Built(key, empty_payload(logdir, HOW_TO.format(logdir=logdir)))
    a = Analysis.of_runs([dataclasses.replace(r) for r in analyses])
    report, view, payload = a.report, a.view, a.summary()
    by_tb: dict[str, RunAnalysis] = {}
    for d, r in zip(payload["runs"], report.runs):
        d["tb_run"] = tb_run_name(r.run_dir, logdir)
        d["errors"] = [_short(e, logdir) for e in d["errors"]]
        by_tb[d["tb_run"]] = r
    payload.update(
        logdir=str(logdir), message="", errors=[_short(e, logdir) for e in payload["errors"]],
        tables=[table_dict(t) for t in view.tables], categories=list(vocab.CATEGORIES), colours=dict(COLOURS),
        phase_colours=list(PHASE_COLOURS))
    payload["whatif"] = {**payload["whatif"], **whatif_rows(report)}
    return Built(key, payload, by_tb)


def whatif_rows(report: Any) -> dict[str, Any]:
    """`python -m analysis.whatif`'s default predictions from each 1-device run, each configuration that was
    also measured shown with its measured step and error (the report's own checks)."""
    from analysis.whatif import wording
    from analysis.whatif.ask import Ask, targets
    from analysis.whatif.check import check_runs
    from analysis.whatif.predict import predict
    from analysis.whatif.profile import WhatIfError, profile_of

    checks, check_preds, _ = check_runs(report.runs, report.metrics)
    measured = {(p.input_run, p.target.strategy, p.target.devices, p.target.device_type, p.target.global_batch): (c, p)
                for c, p in zip(checks, check_preds)}
    defaults = Ask()      # the CLI's default configurations
    inputs: list[str] = []
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for r, m in zip(report.runs, report.metrics):
        if m.devices != 1 or not any(t.steps for t in r.traces):
            continue
        try:
            prof = profile_of(r, m)
            preds = [predict(prof, t) for t in targets(prof, defaults, None)]
        except WhatIfError as exc:
            notes.append(f"{m.name}: no what-if: {exc}")
            continue
        except (ArithmeticError, ValueError, KeyError, TypeError, StopIteration) as exc:   # as check_runs: never sink it
            notes.append(f"{m.name}: no what-if: {type(exc).__name__}: {exc}")
            continue
        inputs.append(wording.profile_line(prof))
        mine = [p for k, (_, p) in measured.items() if k[0] == prof.name]
        seen: set[tuple[Any, ...]] = set()
        for p in sorted(mine + preds, key=lambda p: (p.target.devices, p.target.strategy, p.target.global_batch)):
            k = (p.input_run, p.target.strategy, p.target.devices, p.target.device_type, p.target.global_batch)
            if k in seen:
                continue
            seen.add(k)
            check = measured.get(k)
            rows.append({**wording.prediction_dict(p),
                         "measured_run": check[0].run if check else None,
                         "measured_ms": check[0].measured_ms if check else None,
                         "error": check[0].error if check else None})
    return {"inputs": inputs, "rows": rows, "notes": notes, "foot": wording.CHECK_FOOT}


def timeline_of(run: RunAnalysis) -> dict[str, Any]:
    """The median step's lanes as the HTML report draws them: each lane resampled to the label that covers
    most of each column (analysis.step.timeline.dominant_runs), in ms from the step's start."""
    from analysis.step.timeline import dominant_runs, median_step

    traces = [t for t in run.traces if t.steps]
    if not traces:
        return {"worker": None, "step": None, "step_ms": None, "lanes": [],
                "message": "no profiled step in this run: no timeline"}
    t = next((x for x in traces if x.timeline), traces[0])
    if not t.timeline:
        s = t.steps[median_step(t)]
        spans, x = [], 0.0
        for cat in vocab.CATEGORIES:
            v = s.parts_us.get(cat, 0.0) / 1e3
            if v > 0:
                spans.append([x, x + v, cat])
                x += v
        return {"worker": t.worker, "step": s.step, "step_ms": s.wall_us / 1e3,
                "lanes": [{"lane": "step parts", "spans": spans}],
                "message": "totals placed end to end: no per-event timeline in this analysis"}
    width = next((st.wall_us for st in t.steps if st.step == t.timeline_step), max(sp.end_us for sp in t.timeline))
    lanes = sorted({s.lane for s in t.timeline}, key=lambda x: (not x.startswith("gpu"), x))
    out = []
    for lane in lanes:
        runs = dominant_runs([(sp.start_us, sp.end_us, sp.label) for sp in t.timeline if sp.lane == lane], width)
        out.append({"lane": lane, "spans": [[a / 1e3, b / 1e3, label] for a, b, label in runs]})
    return {"worker": t.worker, "step": t.timeline_step, "step_ms": width / 1e3, "lanes": out, "message": ""}
