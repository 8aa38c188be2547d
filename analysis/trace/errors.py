"""The one error the trace reader and the breakdown raise for bad input.

A report over many runs catches it per trace, prints its one line and carries on,
so the message must stand alone: which file, and what is wrong with it.
"""
from __future__ import annotations

from pathlib import Path


class TraceError(Exception):
    """A trace file that cannot be analysed: missing, corrupt, truncated or not a Kineto trace."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        """Pickled as its two parts: a process-pool worker (analysis.run.pool) sends it back whole."""
        return (type(self), (self.path, self.problem))


class InputError(Exception):
    """Bad input the user can fix (missing path, nothing to analyse); str() is one line."""
