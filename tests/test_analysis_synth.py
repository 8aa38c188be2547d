"""The trace builder (tests/builders/kineto.py) writes what the real reader reads, in both forms."""
from __future__ import annotations

from pathlib import Path

from analysis.trace.reader import parse_trace, read_trace
from builders.kineto import NEW, OLD, TraceBuilder


def test_builder_round_trips_both_forms_plain_and_gz(tmp_path: Path) -> None:
    for form in (NEW, OLD):
        b = TraceBuilder(form)
        b.step(1, 0, 100)
        b.kernel("k", 10, 5, device=1, launch=2)
        b.memcpy("HtoD", 20, 4, device=1, launch=3, nbytes=4000)
        plain = read_trace(b.write(tmp_path / f"{form}.pt.trace.json"))
        zipped = read_trace(b.write(tmp_path / f"{form}.pt.trace.json.gz"))
        mem = parse_trace(b.bytes())
        for t in (plain, zipped, mem):
            assert len(t) == 6                      # step, 2 launches, kernel, memcpy, profiler span
            assert sorted(set(t.device.tolist())) == [-1, 1]
            i = t.names.index("k")
            k = int((t.name == i).nonzero()[0][0])
            assert t.t0_us + t.ts[k] == b.origin + 10 and t.dur[k] == 5
            assert t.corr[k] > 0 and (t.corr == t.corr[k]).sum() == 2   # kernel + its launch
            copy = int((t.name == t.names.index("Memcpy HtoD (Pinned -> Device)")).nonzero()[0][0])
            assert t.nbytes[copy] == 4000


def test_absolute_time_uses_base_time_nanoseconds() -> None:
    b = TraceBuilder(NEW, origin=5.0, base_time_ns=1_000_000_000)
    b.step(1, 0, 10)
    t = parse_trace(b.bytes())
    assert t.t0_us == 5.0 - 50                  # the earliest event: the profiler span
    assert t.unix_ns(b.origin + 10) == 1_000_000_000 + 15_000
    assert parse_trace(TraceBuilder(OLD).bytes()).base_time_ns is None  # old traces carry no base time
