"""Every number a finding or recommendation compares against, in one record (summary.json prints it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Thresholds", "THRESHOLDS", "thresholds_dict"]


@dataclass(frozen=True)
class Thresholds:
    """When a figure is worth a sentence. Shares are fractions of the step's wall time."""

    poor_efficiency: float = 0.80        # scaling efficiency below this -> finding
    superlinear_efficiency: float = 1.20 # above this the comparison itself is suspect -> finding
    comm_share: float = 0.10             # exposed communication
    data_share: float = 0.10             # data loading (DataLoader wait)
    h2d_share: float = 0.05              # host->device input copies
    host_overhead_share: float = 0.20    # host busy, no device working
    idle_share: float = 0.20             # nothing busy
    unclassified_share: float = 0.02     # events the classifier does not know
    imbalance: float = 0.30              # busiest minus least busy GPU of one process
    similar_busy: float = 0.10           # GPUs within this of each other are reported together
    low_gpu_util_pct: float = 50.0       # NVML mean utilisation
    cpu_saturated: float = 0.90          # process tree's mean cores ÷ the job's CPU allocation
    comm_mismatch: float = 2.0           # measured/predicted comm outside [1/x, x] -> said
    amp_min_compute_share: float = 0.40  # AMP only suggested when compute dominates
    amp_compute_saving: float = 0.40     # ASSUMED share of compute time AMP removes (not measured)
    pinned_h2d_saving: float = 0.50      # ASSUMED share of host->device time pinned memory removes
    batch_factor: int = 2                # per-GPU batch multiplier the recommendation proposes
    min_saving_share: float = 0.02       # recommendations saving less than this are dropped
    phase_over_ideal: float = 1.5        # a phase taking this many times its ideal-scaling time -> named
    phase_excess_share: float = 0.05     # ... when the time above ideal is at least this share of the step
    cpu_shared_cores: float = 1.0        # CPU run with N processes on <= this × the 1-device run's CPUs -> finding
    straggler_wait_share: float = 0.05   # the others wait for one rank this share of their step -> finding
    host_launch_saving: float = 0.50     # ASSUMED share of GPU-idle host time CUDA graphs / torch.compile remove
    low_overlap: float = 0.50            # DDP all-reduce overlapped with backward less than this -> overlap advice
    overlap_saving: float = 0.50         # ASSUMED share of the exposed all-reduce better bucketing hides


THRESHOLDS = Thresholds()


def thresholds_dict(t: Thresholds = THRESHOLDS) -> dict[str, Any]:
    return asdict(t)
