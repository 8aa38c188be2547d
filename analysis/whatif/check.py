"""The what-if checks itself: every measured multi-device run predicted from its 1-device run.

The report and `python -m analysis.whatif` both show these rows, so a reader sees how far
to trust the predictions for configurations nobody measured.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from analysis.records import RunAnalysis
from analysis.run.scaling import RunMetrics
from analysis.whatif.predict import Prediction, Target, predict
from analysis.whatif.profile import WhatIfError, profile_of


@dataclass(frozen=True)
class CheckRow:
    run: str                  # the measured run
    strategy: str
    devices: int
    device_type: str
    global_batch: int
    predicted_from: str       # the 1-device run the prediction scaled
    predicted_ms: float
    measured_ms: float
    analytic: bool
    assumed: bool

    @property
    def error(self) -> float:
        """(predicted − measured) ÷ measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


def target_of(m: RunMetrics, cpus: float) -> Target:
    return Target(m.strategy, m.devices, m.device_type, int(m.global_batch or 0), m.cpus or cpus, m.workers or 0)


def check_runs(runs: list[RunAnalysis], metrics: list[RunMetrics]) -> tuple[list[CheckRow], list[Prediction], list[str]]:
    """(rows, the predictions behind them, notes) for each multi-device run with a traced 1-device baseline.

    The baseline is the one analysis.run.scaling.attach_speedups chose (RunMetrics.baseline)."""
    by_name = {m.name: (r, m) for r, m in zip(runs, metrics)}
    rows: list[CheckRow] = []
    preds: list[Prediction] = []
    notes: list[str] = []
    for r, m in zip(runs, metrics):
        if m.devices <= 1 or not m.baseline or m.baseline not in by_name or m.step_ms_source != "trace" \
                or not m.step_ms or not m.global_batch:
            continue
        br, bm = by_name[m.baseline]
        try:
            prof = profile_of(br, bm)
            pred = predict(prof, target_of(m, prof.cpus))
        except WhatIfError as exc:
            notes.append(f"{m.name}: what-if not checked: {exc}")
            continue
        except (ArithmeticError, ValueError, KeyError, TypeError, StopIteration) as exc:   # never sink the report
            notes.append(f"{m.name}: what-if not checked: {type(exc).__name__}: {exc}")
            continue
        preds.append(pred)
        rows.append(CheckRow(m.name, m.strategy, m.devices, m.device_type, m.global_batch, bm.name, pred.step_ms,
                             m.step_ms, pred.analytic, pred.assumed))
    return rows, preds, notes


def error_summary(rows: list[CheckRow]) -> dict[str, float | int | None]:
    errs = [abs(r.error) for r in rows]
    return {"configurations": len(rows), "median_abs_error": statistics.median(errs) if errs else None,
            "worst_abs_error": max(errs) if errs else None}
