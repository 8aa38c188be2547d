"""The GPUs a CHTC user can be matched to, as NVIDIA's public datasheets describe them.

Declarative on purpose: a prediction for a card nobody measured rests on these figures and
nothing else, so they sit in one table a reader can check against the datasheet. Values are
the datasheets' (dense, no sparsity): fp32 = non-tensor FP32 peak, fp16 = FP16 tensor-core
peak with FP32 accumulate where the sheet gives it, memory bandwidth in GB/s (1e9 B/s),
memory in GB, the host link (PCIe generation and width) and NVLink as the sheet quotes it
(total, both directions; None for a PCIe card, whose NVLink bridge is optional and which a
pool rarely fits). Not measurements: the what-if labels anything resting on them "analytic".
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    fp32_tflops: float
    fp16_tflops: float            # tensor cores (what --amp uses)
    memory_gbps: float
    memory_gb: float
    pcie_gen: int
    pcie_width: int
    nvlink_gbps: float | None     # datasheet total (both directions); None: no NVLink between cards
    aliases: tuple[str, ...] = ()

    @property
    def nvlink_one_way_gbps(self) -> float | None:
        return self.nvlink_gbps / 2 if self.nvlink_gbps else None


GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("H200", 67.0, 989.0, 4800.0, 141.0, 5, 16, 900.0, ("H200 SXM", "H200-SXM-141GB")),
    GpuSpec("H100-SXM5-80GB", 67.0, 989.0, 3350.0, 80.0, 5, 16, 900.0, ("H100 80GB HBM3", "H100 SXM", "H100")),
    GpuSpec("H100-PCIE-80GB", 51.0, 756.0, 2000.0, 80.0, 5, 16, None, ("H100 PCIe",)),
    GpuSpec("A100-SXM4-80GB", 19.5, 312.0, 2039.0, 80.0, 4, 16, 600.0, ("A100 80GB SXM",)),
    GpuSpec("A100-SXM4-40GB", 19.5, 312.0, 1555.0, 40.0, 4, 16, 600.0, ("A100 SXM",)),
    GpuSpec("A100-PCIE-80GB", 19.5, 312.0, 1935.0, 80.0, 4, 16, None, ("A100 80GB PCIe",)),
    GpuSpec("A100-PCIE-40GB", 19.5, 312.0, 1555.0, 40.0, 4, 16, None, ("A100 PCIe", "A100")),
    GpuSpec("L40S", 91.6, 362.1, 864.0, 48.0, 4, 16, None),
    GpuSpec("L40", 90.5, 181.0, 864.0, 48.0, 4, 16, None),
    GpuSpec("A40", 37.4, 149.7, 696.0, 48.0, 4, 16, None),
    GpuSpec("RTX A6000", 38.7, 154.8, 768.0, 48.0, 4, 16, None, ("A6000",)),
    GpuSpec("RTX A5000", 27.8, 111.1, 768.0, 24.0, 4, 16, None, ("A5000",)),
    GpuSpec("RTX 2080 Ti", 13.4, 53.8, 616.0, 11.0, 3, 16, None, ("GeForce RTX 2080 Ti", "2080 Ti")),
    GpuSpec("Titan RTX", 16.3, 130.5, 672.0, 24.0, 3, 16, None, ("TITAN RTX",)),
    GpuSpec("Quadro RTX 6000", 16.3, 130.5, 672.0, 24.0, 3, 16, None, ("RTX 6000",)),
    GpuSpec("V100-SXM2-32GB", 15.7, 125.0, 900.0, 32.0, 3, 16, 300.0, ("Tesla V100-SXM2-32GB", "V100 SXM2")),
    GpuSpec("V100-SXM2-16GB", 15.7, 125.0, 900.0, 16.0, 3, 16, 300.0, ("Tesla V100-SXM2-16GB",)),
    GpuSpec("V100-PCIE-32GB", 14.0, 112.0, 900.0, 32.0, 3, 16, None, ("Tesla V100-PCIE-32GB", "V100")),
)

DEFAULT_GPU = "A100-SXM4-80GB"     # what a CPU-only user sees the seed's story on (CHTC's most common large card)

_NOISE = re.compile(r"\b(nvidia|tesla|geforce|quadro)\b")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _NOISE.sub(" ", name.lower()))


def find_gpu(name: str | None) -> GpuSpec | None:
    """The spec for a name as a user types it or NVML reports it ("NVIDIA A100-SXM4-80GB"); None if unknown."""
    if not name:
        return None
    key = _key(name)
    for spec in GPUS:
        if key in {_key(spec.name), *(_key(a) for a in spec.aliases)}:
            return spec
    return None


def names() -> list[str]:
    return [g.name for g in GPUS]
