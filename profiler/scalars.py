"""samples.csv -> TensorBoard scalars, so NVML and host series sit beside the loss.

Tags: ``nvml/gpu<i>/<metric>``, ``host/<metric>`` (whole machine only: per-core
series would be dozens of charts), ``proc/<main|children|tree>/<metric>``.
``global_step`` is milliseconds since the first sample; ``walltime`` the
sample's own time, so TensorBoard's "relative"/"wall" axes line up with the
run. Torch-free: ``writer`` is anything with ``add_scalar`` (torch's
SummaryWriter, tensorboardX, a test double).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .contract import vocab
from .contract.samples import read_samples

__all__ = ["samples_to_scalars", "scalar_tag", "ScalarWriter"]


class ScalarWriter(Protocol):
    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None,
                   walltime: float | None = None) -> None: ...


def scalar_tag(source: str, device: str, metric: str) -> str | None:
    """The TensorBoard tag of one samples.csv row, or None for rows not plotted."""
    if source == vocab.SOURCE_NVML:
        return f"nvml/gpu{device}/{metric}"
    if source == vocab.SOURCE_HOST:
        return f"host/{metric}" if device == vocab.HOST_ALL else None
    if source == vocab.SOURCE_PROC:
        return f"proc/{device}/{metric}"
    return None


def samples_to_scalars(csv_path: Path, writer: ScalarWriter) -> int:
    """Write every plotted row of ``csv_path`` to ``writer``; returns the points written.

    Read with the contract's one samples.csv reader (a line cut short by a kill, a non-number
    and NaN are skipped there; a wrong header raises `SamplesError`).
    """
    samples = read_samples(csv_path)
    if not samples:
        return 0
    first_ns = samples[0].time_ns
    written = 0
    for s in samples:
        tag = scalar_tag(s.source, s.device, s.metric)
        if tag is None:
            continue
        writer.add_scalar(tag, s.value, global_step=(s.time_ns - first_ns) // 1_000_000,
                          walltime=s.time_ns / 1e9)
        written += 1
    return written
