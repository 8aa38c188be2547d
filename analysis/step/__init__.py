"""Layer 2, one trace's steps: classify every event (the one table in classify), split each step into the
breakdown categories, the per-device views, the timeline, the strategy evidence and the collectives."""
from analysis.step.breakdown import analyse, analyse_trace
from analysis.step.events import Events, resolve, worker_name

__all__ = ["analyse", "analyse_trace", "Events", "resolve", "worker_name"]
