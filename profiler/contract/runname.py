"""Run folder names, formatted and parsed here only: the runner's `<strategy>-<N><gpu|cpu>-b<global batch>[-<tag>]`,
and an attached run's `<name>-<N><gpu|cpu>` (its script's name, then what it trained on)."""
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


def _devices(devices: int, device_type: str) -> str:
    """`<N>gpu` or `<N>cpu`."""
    return f"{devices}{'gpu' if device_type == 'cuda' else 'cpu'}"


def format_run_name(strategy: str, devices: int, device_type: str, global_batch: int, tag: str | None = None) -> str:
    return f"{strategy}-{_devices(devices, device_type)}-b{global_batch}" + (f"-{tag}" if tag else "")


def format_attached_name(name: str, devices: object, device_type: object) -> str:
    """An attached run's final folder name: `<name>-<N><gpu|cpu>` once its processes showed how many
    devices of which kind they trained on (`devices` an int, `device_type` "cuda" or "cpu"), else `name`."""
    if isinstance(devices, int) and device_type in ("cuda", "cpu"):
        return f"{name}-{_devices(devices, str(device_type))}"
    return name


def parse_run_name(text: str) -> RunName | None:
    """The parts of a name that follows the pattern, else None (never a guess)."""
    m = _PATTERN.match(text)
    if m is None:
        return None
    return RunName(m.group("strategy"), int(m.group("n")), "cuda" if m.group("kind") == "gpu" else "cpu",
                   int(m.group("batch")), m.group("tag"))
