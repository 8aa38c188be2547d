"""samples.csv, the sampler's long-format file: the header, and the one reader every consumer uses.

``time_ns,source,device,metric,value``; appended and flushed every tick, so the last line of a
killed job may be cut short. The reader skips such rows, and non-finite values, the same way
for every consumer (the report, the TensorBoard scalars); a wrong header is an error.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import NamedTuple

from . import vocab
from .runfiles import open_regular

__all__ = ["Sample", "SamplesError", "read_samples"]


class Sample(NamedTuple):
    time_ns: int
    source: str
    device: str
    metric: str
    value: float


class SamplesError(Exception):
    """samples.csv is not a samples file (wrong header, unreadable); str() is one line."""


def read_samples(path: Path) -> list[Sample]:
    """Every well-formed, finite row in file order; [] when the file is absent or empty."""
    path = Path(path)
    if not os.path.lexists(path):
        return []
    out: list[Sample] = []
    try:
        with io.TextIOWrapper(open_regular(path), newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return []
            if tuple(h.strip() for h in header) != vocab.SAMPLES_HEADER:
                raise SamplesError(f"{path}: not a samples.csv (header {','.join(header)!r})")
            for row in reader:
                if len(row) != 5:
                    continue
                try:
                    value = float(row[4])
                    sample = Sample(int(row[0]), row[1], row[2], row[3], value)
                except ValueError:
                    continue
                if math.isfinite(value):
                    out.append(sample)
    except (OSError, csv.Error) as exc:
        raise SamplesError(f"{path}: cannot read samples.csv ({exc})") from None
    return out
