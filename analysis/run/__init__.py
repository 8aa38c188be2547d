"""Layer 3, runs: find run folders, analyse each (its traces in a process pool, samples.csv once), and measure
them -- the table row, speedup against the 1-device run, the communication cost model."""
from analysis.run.analyse import analyse_run, analyse_runs
from analysis.run.costmodel import CostModel, cost_model
from analysis.run.discover import discover_runs, find_traces, require_runs
from analysis.run.scaling import RunMetrics, attach_speedups, run_metrics

__all__ = ["analyse_run", "analyse_runs", "CostModel", "cost_model", "discover_runs", "find_traces", "require_runs",
           "RunMetrics", "attach_speedups", "run_metrics"]
