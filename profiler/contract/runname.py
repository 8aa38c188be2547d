"""Run folder names: `<strategy>-<N><gpu|cpu>-b<global batch>[-<tag>]`, formatted and parsed here only."""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import vocab

_PATTERN = re.compile(
    r"^(?P<strategy>" + "|".join(re.escape(s) for s in sorted(vocab.STRATEGIES, key=len, reverse=True)) + r")"
    r"-(?P<n>\d+)(?P<kind>gpu|cpu)-b(?P<batch>\d+)(?:-(?P<tag>.+))?$")


@dataclass(frozen=True)
class RunName:
    strategy: str
    devices: int
    device_type: str          # "cuda" | "cpu"
    global_batch: int
    tag: str | None = None

    def __str__(self) -> str:
        return format_run_name(self.strategy, self.devices, self.device_type, self.global_batch, self.tag)


def format_run_name(strategy: str, devices: int, device_type: str, global_batch: int, tag: str | None = None) -> str:
    kind = "gpu" if device_type == "cuda" else "cpu"
    return f"{strategy}-{devices}{kind}-b{global_batch}" + (f"-{tag}" if tag else "")


def parse_run_name(text: str) -> RunName | None:
    """The parts of a name that follows the pattern, else None (never a guess)."""
    m = _PATTERN.match(text)
    if m is None:
        return None
    return RunName(m.group("strategy"), int(m.group("n")), "cuda" if m.group("kind") == "gpu" else "cpu",
                   int(m.group("batch")), m.group("tag"))
