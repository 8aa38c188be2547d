"""What a prediction is: the configuration asked for, the terms its step sums, and the figures derived
from them (images/s, bytes, memory, energy at TDP). Records only -- predict.py fills them in."""
from __future__ import annotations

from dataclasses import dataclass, field

from analysis.datasheet import GpuSpec
from profiler.contract import vocab

__all__ = ["Target", "Term", "Prediction", "energy_per_million_images", "scaled"]


@dataclass(frozen=True)
class Target:
    """The configuration to predict."""

    strategy: str
    devices: int
    device_type: str
    global_batch: int
    cpus: float
    workers: int
    gpu: GpuSpec | None = None
    link_gbps: float | None = None

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.devices

    @property
    def processes(self) -> int:
        return self.devices if self.strategy == vocab.DDP else 1


@dataclass(frozen=True)
class Term:
    name: str          # "forward", "backward", "loss", "optimizer", "replicate", "all-reduce (exposed)", ...
    category: str      # a vocab breakdown category
    ms: float          # what it adds to the step
    basis: str


@dataclass
class Prediction:
    input_run: str
    target: Target
    terms: list[Term]
    step_ms: float
    images_per_s: float
    speedup: float                       # images/s vs the input run's measured images/s
    images_per_device_hour: float
    bytes_per_step: int
    memory_per_device: dict[str, int]    # device 0 (DataParallel's busiest) / one DDP rank; per process on a CPU
    memory_fits: bool | None             # vs the GPU's memory (None: no GPU or not known)
    gpu: str | None
    analytic: bool
    assumed: bool
    loader_cores_needed: float | None    # cores the DataLoader keeps busy at the predicted rate
    notes: list[str] = field(default_factory=list)
    kwh_per_million_images: float | None = None   # at TDP × predicted busy share (energy_per_million_images)
    tdp_w: float | None = None                     # the target card's datasheet TDP it rests on

    @property
    def busy_share(self) -> float:
        """Compute + communication + host→device copy as a share of the predicted step."""
        parts = self.parts_ms
        busy = parts[vocab.COMPUTE] + parts[vocab.COMMUNICATION] + parts[vocab.H2D_COPY]
        return min(1.0, busy / self.step_ms) if self.step_ms > 0 else 0.0

    @property
    def parts_ms(self) -> dict[str, float]:
        out = {c: 0.0 for c in vocab.CATEGORIES}
        for t in self.terms:
            out[t.category] += t.ms
        return out

    @property
    def memory_bytes(self) -> int:
        return sum(self.memory_per_device.values())

    @property
    def basis(self) -> list[str]:
        return [f"{t.name}: {t.basis}" for t in self.terms] + list(self.notes)


def energy_per_million_images(tdp_w: float, devices: int, step_ms: float, busy_share: float,
                               images_per_step: int) -> float:
    """kWh per million images at the datasheet TDP × the predicted busy share (stated: not a measurement;
    an idle GPU still draws power, a busy one may stay under its TDP)."""
    joules_per_step = tdp_w * devices * (step_ms / 1e3) * busy_share
    return joules_per_step / images_per_step * 1e6 / 3.6e6


def scaled(ms: float, images_from: int, images_to: int, factor: float = 1.0) -> float:
    """A time measured for images_from images, moved to images_to (per image), times a factor."""
    return ms / images_from * images_to * factor
