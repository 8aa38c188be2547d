"""Measured NCCL all-reduce bus bandwidths per interconnect, each with where it was measured.

A datasheet link rate says little about what an all-reduce gets: the same 600 GB/s of NVLink
gives 232 GB/s of bus bandwidth on an A100 NVSwitch board but 116 GB/s between two NVLink-bridged
H100 PCIe cards, and PCIe boards land far below their lanes when traffic goes through the host.
Bus bandwidth (nccl-tests' busbw, doc/PERFORMANCE.md) is defined so that a ring all-reduce of S
bytes over N ranks takes 2(N-1)/N × S / busbw: exactly the `link` the what-if's ring term divides
by. Rows are all_reduce_perf's largest-size busbw as posted in public issue threads (the URL),
one row per interconnect and GPU count; a lookup takes the row with the nearest GPU count.
PCIe gen 3 has no posted measurement here: it is derived from gen 4's measured share of its lanes
(stated as derived). Interconnects with no row (V100 SXM2's NVLink mesh) keep link.py's datasheet × 80 %.
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis.datasheet import GpuSpec
from profiler.contract.pcie import PCIE_LANE_GBPS

__all__ = ["BUSBW", "BusBw", "interconnect_of", "lookup"]


@dataclass(frozen=True)
class BusBw:
    interconnect: str     # "pcie4" | "pcie5" | "nvlink-bridge" | "sxm-600" | "sxm-900" (SXM board, its NVLink GB/s)
    gpus: int
    gbps: float           # all_reduce_perf busbw, GB/s, at the largest size posted
    measured_on: str
    source: str


BUSBW: tuple[BusBw, ...] = (
    BusBw("pcie4", 4, 25.95, "4× GeForce RTX 4090, PCIe gen 4 with P2P, 1 GiB",
          "https://github.com/tinygrad/open-gpu-kernel-modules/issues/36"),
    BusBw("pcie5", 4, 35.0, "4× GeForce RTX 5090, PCIe gen 5, 1-8 GiB",
          "https://github.com/NVIDIA/nccl/issues/1639"),
    BusBw("pcie5", 8, 28.0, "8× GeForce RTX 5090, PCIe gen 5, 1-8 GiB",
          "https://github.com/NVIDIA/nccl/issues/1639"),
    BusBw("nvlink-bridge", 2, 116.26, "2× H100 PCIe joined by an NVLink bridge, 4 GiB",
          "https://github.com/NVIDIA/nccl-tests/issues/194"),
    BusBw("sxm-600", 8, 232.54, "8× A100 SXM on NVSwitch, up to 4 GiB",
          "https://github.com/NVIDIA/nccl-tests/issues/175"),
    BusBw("sxm-900", 8, 475.0, "8× H200 on NVSwitch (NVLink SHARP), up to 4 GiB",
          "https://github.com/NVIDIA/nccl-tests/issues/272"),
)

def interconnect_of(spec: GpuSpec | None, pcie_gen: int | None, nvlink_links: int | None) -> str | None:
    """What joins the cards: an SXM board's NVLink (by its datasheet rate), a bridge on PCIe cards with NVLink
    links, else PCIe by generation."""
    if spec is not None and spec.nvlink_gbps:
        return f"sxm-{spec.nvlink_gbps:.0f}"
    if nvlink_links:
        return "nvlink-bridge"
    gen = pcie_gen or (spec.pcie_gen if spec is not None else None)
    return f"pcie{gen}" if gen else None


def lookup(interconnect: str | None, gpus: int) -> tuple[float, str] | None:
    """(busbw GB/s, the sentence that says where it comes from), or None when nothing is posted for it."""
    rows = [r for r in BUSBW if r.interconnect == interconnect]
    if rows:
        r = min(rows, key=lambda r: (abs(r.gpus - gpus), -r.gpus))
        return r.gbps, f"{r.gbps:g} GB/s: NCCL all-reduce bus bandwidth measured on {r.measured_on} ({r.source})"
    if interconnect == "pcie3":
        gen4 = min((r for r in BUSBW if r.interconnect == "pcie4"), key=lambda r: abs(r.gpus - gpus))
        x16_3, x16_4 = PCIE_LANE_GBPS[3] * 16, PCIE_LANE_GBPS[4] * 16
        share = gen4.gbps / x16_4
        gbps = x16_3 * share
        return gbps, (f"{gbps:.1f} GB/s: PCIe gen 3 x16 ({x16_3:.1f} GB/s) × {share:.0%}, the share of its "
                      f"lanes PCIe gen 4 reaches in an NCCL all-reduce on {gen4.measured_on} ({gen4.source}; derived: "
                      "no gen 3 measurement in the table)")
    return None
