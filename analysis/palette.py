"""The colour of each breakdown category and of the phase labels: the HTML plots and the dashboard agree,
and the dashboard gets them without importing matplotlib."""
from __future__ import annotations

from profiler.contract import vocab

__all__ = ["COLOURS", "PHASE_COLOURS"]

COLOURS = {
    vocab.COMPUTE: "#2e7d32",
    vocab.COMMUNICATION: "#c62828",
    vocab.H2D_COPY: "#ef6c00",
    vocab.DATA_LOADING: "#1565c0",
    vocab.HOST_OVERHEAD: "#8e24aa",
    vocab.UNCLASSIFIED: "#6d4c41",
    vocab.IDLE: "#bdbdbd",
}
PHASE_COLOURS = ["#90caf9", "#a5d6a7", "#ffcc80", "#ce93d8", "#ef9a9a", "#80cbc4", "#fff59d", "#b0bec5",
                 "#f48fb1", "#c5e1a5"]
