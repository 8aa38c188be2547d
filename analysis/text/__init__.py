"""Text shared by every output: terminal-safe strings, plain-text tables and units (a leaf: imports nothing of ours)."""
from analysis.text.tables import text_table
from analysis.text.terminal import shown, shown_lines
from analysis.text.units import cpus, gb, ms, pct

__all__ = ["text_table", "shown", "shown_lines", "pct", "gb", "ms", "cpus"]
