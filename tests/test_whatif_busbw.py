"""The link the what-if divides all-reduce bytes by: measured NCCL bus bandwidths per interconnect (whatif/busbw.py)."""
from __future__ import annotations

import pytest

from analysis.datasheet import find_gpu
from analysis.whatif.busbw import interconnect_of, lookup
from analysis.whatif.link import choose_link
from profiler.contract.runjson import GpuInfo


@pytest.mark.parametrize("gpu,devices,gbps,cites", [
    ("A100-PCIE-40GB", 2, 25.95, "tinygrad/open-gpu-kernel-modules/issues/36"),   # PCIe gen 4
    ("A100-SXM4-80GB", 4, 232.54, "NVIDIA/nccl-tests/issues/175"),                 # SXM, 600 GB/s NVLink
    ("H200", 8, 475.0, "NVIDIA/nccl-tests/issues/272"),                             # SXM, 900 GB/s NVLink
    ("H100-PCIE-80GB", 4, 35.0, "NVIDIA/nccl/issues/1639"),                         # PCIe gen 5, nearest: 4 GPUs
    ("H100-PCIE-80GB", 8, 28.0, "NVIDIA/nccl/issues/1639"),
])
def test_datasheet_cards_take_their_interconnects_measured_row(gpu, devices, gbps, cites) -> None:
    link = choose_link(None, {}, "run", [], find_gpu(gpu), False, devices)
    assert link is not None and link.gbps == gbps and link.source == "datasheet" and cites in link.basis


def test_gen3_is_derived_and_an_unmeasured_mesh_keeps_the_datasheet() -> None:
    gbps, basis = lookup("pcie3", 2)
    assert gbps == pytest.approx(15.76 * 25.95 / 31.504)          # 12.98 GB/s: gen 4's 82.4 % of its 16 × 1.969 GB/s
    assert "derived" in basis
    v100 = choose_link(None, {}, "run", [], find_gpu("V100-SXM2-32GB"), False, 4)
    assert interconnect_of(find_gpu("V100-SXM2-32GB"), None, None) == "sxm-300" and lookup("sxm-300", 4) is None
    assert v100.gbps == pytest.approx(150.0 * 0.8)                 # NVLink 300 GB/s total, one way × 80 %


def test_the_run_json_links_pick_the_row_and_a_measured_copy_still_wins() -> None:
    bridged = [GpuInfo(index=i, name="NVIDIA H100 PCIe", nvlink_links=18, pcie_link_gen=5, pcie_link_width=16)
               for i in range(2)]
    spec = find_gpu("H100-PCIE-80GB")
    link = choose_link(None, {}, "run", bridged, spec, True, 2)
    assert (link.gbps, link.source) == (116.26, "run.json") and "nccl-tests/issues/194" in link.basis
    measured = choose_link(None, {"memcpy device-to-device": 90.0}, "run", bridged, spec, True, 2)
    assert (measured.gbps, measured.source) == (90.0, "measured")
    narrow = [GpuInfo(index=0, name="A100", pcie_link_gen=4, pcie_link_width=8)]
    assert choose_link(None, {}, "run", narrow, find_gpu("A100-PCIE-40GB"), True, 2).gbps == pytest.approx(1.969 * 8 * 0.8)
