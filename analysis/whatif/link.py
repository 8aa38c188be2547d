"""Which bandwidth moves the bytes between devices, and on what it rests.

The order: a figure the user gives (--link-gbps) overrides; else what the input run measured moving
data between devices; else what joins the cards (NVML's links in run.json, else the datasheet of
--gpu) looked up in busbw.py's table of measured NCCL all-reduce bus bandwidths; else, for an
interconnect with no measurement there, the link's rate at a stated efficiency. Gloo on a CPU is a different thing (an all-reduce rate,
not a link) and lives in predict.py with the calibration.
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis.datasheet import GpuSpec
from analysis.whatif.busbw import interconnect_of, lookup
from profiler.contract.pcie import pcie_gbps
from profiler.contract.runjson import GpuInfo

LINK_EFFICIENCY = 0.8     # share of a PCIe / NVLink datasheet rate a large copy or NCCL ring achieves (stated)
NVLINK_GBPS_PER_LINK = 25.0   # one direction, NVLink 2/3/4 (V100, A100, H100 all: 25 GB/s per link per direction)


@dataclass(frozen=True)
class Link:
    gbps: float
    source: str          # "given" | "measured" | "run.json" | "datasheet": where the figure or the interconnect came from
    basis: str           # the sentence the prediction quotes


def choose_link(given_gbps: float | None, measured: dict[str, float], run_name: str, gpus: list[GpuInfo],
                spec: GpuSpec | None, same_cards: bool, devices: int = 2) -> Link | None:
    """The device-to-device bandwidth a prediction uses for `devices` cards (None: nothing to go on).

    measured/run.json figures count only when the target runs on the cards the input ran on
    (same_cards); predicting another card uses its datasheet."""
    if given_gbps:
        return Link(given_gbps, "given", f"{given_gbps:.1f} GB/s given by --link-gbps")
    if same_cards:
        d2d = measured.get("memcpy device-to-device")
        if d2d:
            return Link(d2d, "measured", f"{d2d:.1f} GB/s measured by Memcpy PtoP/DtoD in {run_name}")
        nv = [g.nvlink_links for g in gpus if g.nvlink_links]
        gens = [g.pcie_link_gen for g in gpus if g.pcie_link_gen and (g.pcie_link_width or 16) >= 16]
        if nv or (gens and len(gens) == len(gpus)):
            found = lookup(interconnect_of(spec, min(gens) if gens else None, min(nv) if nv else None), devices)
            if found is not None:
                what = f"{min(nv)} NVLink links" if nv else f"PCIe gen {min(gens)} x16"
                return Link(found[0], "run.json", f"{found[1]}; the cards' {what} from run.json (NVML)")
        if nv:
            gbps = min(nv) * NVLINK_GBPS_PER_LINK * LINK_EFFICIENCY
            return Link(gbps, "run.json", f"{gbps:.1f} GB/s: {min(nv)} NVLink links × {NVLINK_GBPS_PER_LINK:g} GB/s "
                        f"(run.json) × {LINK_EFFICIENCY:.0%} efficiency (stated)")
        rated = [(pcie_gbps(g.pcie_link_gen, g.pcie_link_width) or g.pcie_max_gbps, g) for g in gpus]
        rated = [(r, g) for r, g in rated if r]
        if rated:
            r, g = min(rated, key=lambda x: x[0])
            gbps = r * LINK_EFFICIENCY
            return Link(gbps, "run.json", f"{gbps:.1f} GB/s: PCIe gen {g.pcie_link_gen} x{g.pcie_link_width} "
                        f"({r:.1f} GB/s, run.json NVML) × {LINK_EFFICIENCY:.0%} efficiency (stated)")
    if spec is not None:
        found = lookup(interconnect_of(spec, None, None), devices)
        if found is not None:
            return Link(found[0], "datasheet", f"{found[1]}; {spec.name}'s link from its datasheet")
        if spec.nvlink_one_way_gbps:
            gbps = spec.nvlink_one_way_gbps * LINK_EFFICIENCY
            return Link(gbps, "datasheet", f"{gbps:.1f} GB/s: {spec.name} NVLink {spec.nvlink_one_way_gbps:.0f} GB/s "
                        f"one way (datasheet) × {LINK_EFFICIENCY:.0%} efficiency (stated; assumes NVLink-connected cards)")
        r = pcie_gbps(spec.pcie_gen, spec.pcie_width) or 0.0
        gbps = r * LINK_EFFICIENCY
        return Link(gbps, "datasheet", f"{gbps:.1f} GB/s: {spec.name} PCIe gen {spec.pcie_gen} x{spec.pcie_width} "
                    f"({r:.1f} GB/s, datasheet) × {LINK_EFFICIENCY:.0%} efficiency (stated)")
    return None


def host_link(gpus: list[GpuInfo], spec: GpuSpec | None, measured: dict[str, float], run_name: str,
              same_cards: bool) -> Link | None:
    """Host → device (the input batch): measured HtoD memcpy, else PCIe from run.json, else the datasheet's PCIe."""
    if same_cards and measured.get("memcpy HtoD"):
        g = measured["memcpy HtoD"]
        return Link(g, "measured", f"{g:.1f} GB/s measured by Memcpy HtoD in {run_name}")
    rated = [(pcie_gbps(g.pcie_link_gen, g.pcie_link_width) or g.pcie_max_gbps or 0.0) for g in gpus] if same_cards else []
    if rated and min(rated) > 0:
        gbps = min(rated) * LINK_EFFICIENCY
        return Link(gbps, "run.json", f"{gbps:.1f} GB/s: PCIe {min(rated):.1f} GB/s (run.json NVML) × "
                    f"{LINK_EFFICIENCY:.0%} efficiency (stated)")
    if spec is not None:
        r = pcie_gbps(spec.pcie_gen, spec.pcie_width) or 0.0
        return Link(r * LINK_EFFICIENCY, "datasheet", f"{r * LINK_EFFICIENCY:.1f} GB/s: {spec.name} PCIe gen "
                    f"{spec.pcie_gen} x{spec.pcie_width} ({r:.1f} GB/s, datasheet) × {LINK_EFFICIENCY:.0%} efficiency (stated)")
    return None
