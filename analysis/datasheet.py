"""The GPUs a CHTC user can be matched to, as NVIDIA's public datasheets describe them.

Declarative on purpose: a prediction for a card nobody measured, and a run's MFU, rest on these
figures and nothing else, so they sit in one table a reader can check against the datasheet.
A leaf module (imports nothing of analysis): the run layer (MFU, energy) and the what-if both
read it. Values are the datasheets' (dense, no sparsity -- a sheet's "with sparsity" figure is
halved): fp32 = non-tensor FP32 peak; tf32 = TF32 tensor-core peak (= fp32 on a pre-Ampere card,
which has no TF32); fp16 = FP16/BF16 tensor-core peak with FP32 accumulate where the sheet gives
it (what --amp uses); memory bandwidth in GB/s (1e9 B/s), memory in GB, the host link (PCIe
generation and width), NVLink as the sheet quotes it (total, both directions; None for a PCIe
card, whose NVLink bridge is optional and which a pool rarely fits), and the board's maximum
power (TDP) in watts. Not measurements: the what-if labels anything resting on them "analytic".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Precision = Literal["fp32", "tf32", "fp16"]


@dataclass(frozen=True)
class GpuSpec:
    name: str
    fp32_tflops: float
    fp16_tflops: float            # tensor cores, dense (what --amp uses; bf16 the same where the card has it)
    memory_gbps: float
    memory_gb: float
    pcie_gen: int
    pcie_width: int
    nvlink_gbps: float | None     # datasheet total (both directions); None: no NVLink between cards
    aliases: tuple[str, ...] = ()
    tf32_tflops: float | None = None   # TF32 tensor cores, dense; None: no TF32 (pre-Ampere): fp32 applies
    tdp_w: float | None = None         # the board's maximum power (TDP / TBP) in watts

    @property
    def nvlink_one_way_gbps(self) -> float | None:
        return self.nvlink_gbps / 2 if self.nvlink_gbps else None

    def peak_tflops(self, precision: Precision) -> float:
        """The dense datasheet peak for fp32 / tf32 / fp16 (tf32 on a card without it: the fp32 peak)."""
        if precision == "fp16":
            return self.fp16_tflops
        if precision == "tf32":
            return self.tf32_tflops if self.tf32_tflops is not None else self.fp32_tflops
        return self.fp32_tflops


GPUS: tuple[GpuSpec, ...] = (
    # NVIDIA H200 Tensor Core GPU datasheet (SXM): H100 SXM's compute; TF32 989 / FP16 1,979 with sparsity; 700 W
    GpuSpec("H200", 67.0, 989.0, 4800.0, 141.0, 5, 16, 900.0, ("H200 SXM", "H200-SXM-141GB"),
            tf32_tflops=494.7, tdp_w=700.0),
    # NVIDIA H100 Tensor Core GPU datasheet, SXM: TF32 989 / FP16 1,979 with sparsity; up to 700 W
    GpuSpec("H100-SXM5-80GB", 67.0, 989.0, 3350.0, 80.0, 5, 16, 900.0, ("H100 80GB HBM3", "H100 SXM", "H100"),
            tf32_tflops=494.7, tdp_w=700.0),
    # NVIDIA H100 datasheet, PCIe: TF32 756 / FP16 1,513 with sparsity; 300-350 W (the maximum)
    GpuSpec("H100-PCIE-80GB", 51.0, 756.0, 2000.0, 80.0, 5, 16, None, ("H100 PCIe",),
            tf32_tflops=378.0, tdp_w=350.0),
    # NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM: TF32 156, FP16 312 (dense); 400 W
    GpuSpec("A100-SXM4-80GB", 19.5, 312.0, 2039.0, 80.0, 4, 16, 600.0, ("A100 80GB SXM",),
            tf32_tflops=156.0, tdp_w=400.0),
    # NVIDIA A100 datasheet, 40GB SXM: TF32 156, FP16 312 (dense); 400 W
    GpuSpec("A100-SXM4-40GB", 19.5, 312.0, 1555.0, 40.0, 4, 16, 600.0, ("A100 SXM",),
            tf32_tflops=156.0, tdp_w=400.0),
    # NVIDIA A100 datasheet, 80GB PCIe: TF32 156, FP16 312 (dense); 300 W
    GpuSpec("A100-PCIE-80GB", 19.5, 312.0, 1935.0, 80.0, 4, 16, None, ("A100 80GB PCIe",),
            tf32_tflops=156.0, tdp_w=300.0),
    # NVIDIA A100 PCIe 40GB product brief: TF32 156, FP16 312 (dense); 250 W
    GpuSpec("A100-PCIE-40GB", 19.5, 312.0, 1555.0, 40.0, 4, 16, None, ("A100 PCIe", "A100"),
            tf32_tflops=156.0, tdp_w=250.0),
    # NVIDIA L40S datasheet: TF32 183 / 366 sparse, FP16 362.05 / 733 sparse; 350 W
    GpuSpec("L40S", 91.6, 362.1, 864.0, 48.0, 4, 16, None, tf32_tflops=183.0, tdp_w=350.0),
    # NVIDIA L40 datasheet: TF32 90.5 / 181 sparse, FP16 181.05 / 362.1 sparse; 300 W
    GpuSpec("L40", 90.5, 181.0, 864.0, 48.0, 4, 16, None, tf32_tflops=90.5, tdp_w=300.0),
    # NVIDIA A40 datasheet: TF32 74.8 / 149.6 sparse, FP16 149.7 / 299.4 sparse; 300 W
    GpuSpec("A40", 37.4, 149.7, 696.0, 48.0, 4, 16, None, tf32_tflops=74.8, tdp_w=300.0),
    # NVIDIA RTX A6000 datasheet: tensor 309.7 TFLOPS sparse FP16 (154.8 dense), TF32 77.4 dense; 300 W
    GpuSpec("RTX A6000", 38.7, 154.8, 768.0, 48.0, 4, 16, None, ("A6000",), tf32_tflops=77.4, tdp_w=300.0),
    # NVIDIA RTX A5000 datasheet: tensor 222.2 TFLOPS sparse FP16 (111.1 dense), TF32 55.6 dense; 230 W
    GpuSpec("RTX A5000", 27.8, 111.1, 768.0, 24.0, 4, 16, None, ("A5000",), tf32_tflops=55.6, tdp_w=230.0),
    # NVIDIA Turing (TU102) whitepaper, GeForce RTX 2080 Ti: FP16 tensor 53.8 with FP32 accumulate, no TF32; 250 W
    GpuSpec("RTX 2080 Ti", 13.4, 53.8, 616.0, 11.0, 3, 16, None, ("GeForce RTX 2080 Ti", "2080 Ti"), tdp_w=250.0),
    # NVIDIA TITAN RTX spec: 130 tensor TFLOPS, no TF32; 280 W
    GpuSpec("Titan RTX", 16.3, 130.5, 672.0, 24.0, 3, 16, None, ("TITAN RTX",), tdp_w=280.0),
    # NVIDIA Quadro RTX 6000 datasheet: tensor 130.5 TFLOPS, no TF32; 295 W (max power)
    GpuSpec("Quadro RTX 6000", 16.3, 130.5, 672.0, 24.0, 3, 16, None, ("RTX 6000",), tdp_w=295.0),
    # NVIDIA Tesla V100 datasheet, SXM2: FP32 15.7, tensor 125, no TF32; 300 W
    GpuSpec("V100-SXM2-32GB", 15.7, 125.0, 900.0, 32.0, 3, 16, 300.0, ("Tesla V100-SXM2-32GB", "V100 SXM2"),
            tdp_w=300.0),
    GpuSpec("V100-SXM2-16GB", 15.7, 125.0, 900.0, 16.0, 3, 16, 300.0, ("Tesla V100-SXM2-16GB",), tdp_w=300.0),
    # NVIDIA Tesla V100 datasheet, PCIe: FP32 14, tensor 112, no TF32; 250 W
    GpuSpec("V100-PCIE-32GB", 14.0, 112.0, 900.0, 32.0, 3, 16, None, ("Tesla V100-PCIE-32GB", "V100"), tdp_w=250.0),
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
