"""The library facade: one object over scalescope's runs, for notebooks, other tools, the CLIs and the dashboard.

    from analysis import Analysis
    a = Analysis("traces")
    a.breakdown()          # {run: {category: ms per step}}
    a.findings()           # typed findings, each with its figures
    a.whatif(devices=(2, 4))
    a.summary()            # the dict report/summary.json holds

Like Holistic Trace Analysis' TraceAnalysis, one front class over small analysers; unlike it, its unit is
a run (run.json + every rank's trace + samples.csv), not a folder of traces. Every step is computed once,
on first use, in the report's order: discover -> analyse traces -> measure runs -> findings and what-if
checks -> view -> summary.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from analysis.datasheet import find_gpu, names
from analysis.findings import THRESHOLDS, Finding, Recommendation, Thresholds
from analysis.records import RunAnalysis
from analysis.run.analyse import TraceAnalyser, analyse_runs
from analysis.run.discover import require_runs
from analysis.run.scaling import DeviceBusy, RunMetrics
from analysis.tensorboard.profiler_plugin import plugin_note
from analysis.view.model import Report, build_report
from analysis.view.reportview import ReportView, build_view
from analysis.view.summary import to_summary
from analysis.whatif.ask import Ask, predictions
from analysis.whatif.predict import Prediction
from analysis.whatif.profile import WhatIfError

__all__ = ["Analysis"]


class Analysis:
    """Every run found under `paths` (folders of run folders, run folders or trace files).

    InputError (one line) when a path does not exist or holds no run; a bad trace is one line in
    `errors`, never an exception, and the other runs are still analysed."""

    def __init__(self, paths: str | Path | Sequence[str | Path] = "traces", *, jobs: int | None = None,
                 progress: bool | None = False, analyser: TraceAnalyser | None = None,
                 thresholds: Thresholds = THRESHOLDS) -> None:
        self.paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        self.jobs, self.progress, self.analyser, self.thresholds = jobs, progress, analyser, thresholds
        self._runs: list[RunAnalysis] | None = None

    @classmethod
    def of_runs(cls, runs: Sequence[RunAnalysis], thresholds: Thresholds = THRESHOLDS) -> Analysis:
        """Over runs already analysed (the dashboard caches them per folder)."""
        a = cls([], thresholds=thresholds)
        a._runs = list(runs)
        return a

    # --- the pipeline, each step once -----------------------------------------------------------------

    @cached_property
    def run_dirs(self) -> list[Path]:
        return require_runs(self.paths)

    @property
    def runs(self) -> list[RunAnalysis]:
        if self._runs is None:
            self._runs = analyse_runs(self.run_dirs, self.analyser, progress=self.progress, jobs=self.jobs)
        return self._runs

    @cached_property
    def report(self) -> Report:
        note = plugin_note()
        return build_report(self.runs, self.thresholds, environment_notes=[note] if note else [])

    @cached_property
    def view(self) -> ReportView:
        return build_view(self.report)

    @property
    def metrics(self) -> list[RunMetrics]:
        return self.report.metrics

    @property
    def errors(self) -> list[str]:
        return self.report.errors

    # --- what a notebook asks ---------------------------------------------------------------------------

    def breakdown(self) -> dict[str, dict[str, float]]:
        """Mean ms per step in each category (vocab.CATEGORIES), per run name; {} for a run without a trace."""
        return {m.name: dict(m.parts_ms) for m in self.metrics}

    def per_device(self) -> dict[str, list[DeviceBusy]]:
        """Each device of each run on its own (busy, compute, communication, idle shares), never merged."""
        return {m.name: list(m.device_busy) for m in self.metrics}

    def findings(self) -> list[Finding]:
        return list(self.report.findings)

    def recommendations(self) -> list[Recommendation]:
        return list(self.report.recommendations)

    def whatif(self, ask: Ask | None = None, *, gpu: str | None = None, **options: Any) -> list[Prediction]:
        """Predictions from the 1-device runs (else every profiled run) for `ask`, or for Ask(**options)
        (strategies, devices, device_type, global_batch, batch_per_device, link_gbps, cpus, workers);
        gpu: a card of the datasheet table. WhatIfError (one line) when nothing can be predicted."""
        spec = None
        if gpu is not None:
            spec = find_gpu(gpu)
            if spec is None:
                raise WhatIfError(f"unknown GPU {gpu!r} (known: {', '.join(names())})")
        results, _, _ = predictions(self.runs, self.metrics, ask or Ask(**options), spec)
        return [p for _, preds in results for p in preds]

    def summary(self) -> dict[str, Any]:
        """The dict report/summary.json holds."""
        return to_summary(self.report, self.view)
