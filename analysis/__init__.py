"""Explain: read traces/, break steps down, model scaling, findings, what-if, report.

Never imports torch or `models`: it must run where torch is absent or slow to import.
The layers, lowest first (each imports only those below it; `lint-imports` checks them, docs/design.md
says what each holds): records | text | palette -> trace -> step -> run -> findings | whatif -> view ->
tensorboard -> api -> report | dashboard | condor. `from analysis import Analysis` is the library facade.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Analysis"]


def __getattr__(name: str) -> Any:
    """The facade on first use, so `import analysis.trace` stays as light as that layer."""
    if name == "Analysis":
        from analysis.api import Analysis
        return Analysis
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
