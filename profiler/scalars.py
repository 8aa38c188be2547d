"""samples.csv -> TensorBoard scalars, so NVML and host series sit beside the loss.

Tags: ``nvml/gpu<i>/<metric>``, ``host/<metric>`` (whole machine only: per-core
series would be dozens of charts), ``proc/<main|children>/<metric>``.
``global_step`` is milliseconds since the first sample; ``walltime`` the
sample's own time, so TensorBoard's "relative"/"wall" axes line up with the
run. Torch-free: ``writer`` is anything with ``add_scalar`` (torch's
SummaryWriter, tensorboardX, a test double).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Protocol

from profiler.contract import vocab

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

    Malformed rows (a line cut short by a kill, a non-number) are skipped.
    """
    written = 0
    first_ns: int | None = None
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return 0
        if tuple(header) != vocab.SAMPLES_HEADER:
            raise ValueError(f"{csv_path}: not a samples.csv (header {header!r})")
        for row in reader:
            if len(row) != len(vocab.SAMPLES_HEADER):
                continue
            time_s, source, device, metric, value_s = row
            try:
                time_ns = int(time_s)
                value = float(value_s)
            except ValueError:
                continue
            if not math.isfinite(value):
                continue
            if first_ns is None:
                first_ns = time_ns
            tag = scalar_tag(source, device, metric)
            if tag is None:
                continue
            writer.add_scalar(tag, value, global_step=(time_ns - first_ns) // 1_000_000,
                              walltime=time_ns / 1e9)
            written += 1
    return written
