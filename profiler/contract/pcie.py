"""PCIe link rates, written once: the producer's run.json `pcie_max_gbps` and the what-if's links both use them."""
from __future__ import annotations

from typing import Final

__all__ = ["PCIE_LANE_GBPS", "pcie_gbps"]

# GB/s (1e9 bytes/s) per lane, one direction, after line encoding (8b/10b to gen 2, 128b/130b from gen 3,
# FLIT at gen 6), by PCIe generation.
PCIE_LANE_GBPS: Final = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def pcie_gbps(gen: int | None, width: int | None) -> float | None:
    """One direction of a gen-`gen` x`width` link, GB/s; None when either is unknown."""
    if not gen or not width or gen not in PCIE_LANE_GBPS:
        return None
    return PCIE_LANE_GBPS[gen] * width
