"""Layer 1, reading: a Kineto trace file (any JSON layout, plain or gzip, split between processes) into columns.

Imports nothing of the analysis above it; a bad file is one TraceError line, never a traceback or a hang.
"""
from analysis.trace.errors import InputError, TraceError
from analysis.trace.reader import Trace, parse_trace, read_trace

__all__ = ["InputError", "TraceError", "Trace", "parse_trace", "read_trace"]
