"""The shared names between the writers (`models`, `profiler`) and `analysis`.

Imports nothing heavy: `analysis` runs where torch is absent. A name here is a
contract with every trace already written — rename only with a schema bump.
"""
from __future__ import annotations

from typing import Final, Literal, NamedTuple

# --- strategies (docs/design.md "The traces/<run>/ contract") ----------------------------------------
SINGLE: Final = "single"
DP: Final = "dp"
DP_LAYERWISE: Final = "dp-layerwise"
DDP: Final = "ddp"
STRATEGIES: Final = (SINGLE, DP, DP_LAYERWISE, DDP)
DP_STRATEGIES: Final = (DP, DP_LAYERWISE)     # one process drives every GPU through nn.DataParallel
UNKNOWN_STRATEGY: Final = "unknown"           # a folder with neither run.json nor a parsable name

# --- device types (torch's names; run names spell them gpu / cpu) ------------------------------
DeviceType = Literal["cuda", "cpu"]
CUDA: Final = "cuda"
CPU: Final = "cpu"
DEVICE_TYPES: Final = (CUDA, CPU)

# --- host-side record_function labels added by the runner -------------------
PREFIX: Final = "ss:"
DATA_WAIT: Final = "ss:data_wait"          # next() on the DataLoader
H2D: Final = "ss:h2d"                      # host -> device input copy
FORWARD: Final = "ss:forward"
LOSS: Final = "ss:loss"
BACKWARD: Final = "ss:backward"
OPTIMIZER: Final = "ss:optimizer"
# DataParallel internals, labelled by models.strategies.LabelledDataParallel
SCATTER: Final = "ss:dp.scatter"
REPLICATE: Final = "ss:dp.replicate"
PARALLEL_APPLY: Final = "ss:dp.parallel_apply"
GATHER: Final = "ss:dp.gather"

TRAIN_STEP_PHASES: Final = (DATA_WAIT, H2D, FORWARD, LOSS, BACKWARD, OPTIMIZER)
DP_PHASES: Final = (SCATTER, REPLICATE, PARALLEL_APPLY, GATHER)
# nn.DataParallel's method -> its label: the runner's LabelledDataParallel and attach's patch both use this
DP_METHOD_LABELS: Final = (("scatter", SCATTER), ("replicate", REPLICATE),
                           ("parallel_apply", PARALLEL_APPLY), ("gather", GATHER))
ALL_PHASES: Final = TRAIN_STEP_PHASES + DP_PHASES

# --- the torch.profiler schedule every producer defaults to ---------------------
class ScheduleDefaults(NamedTuple):
    """Skip ``wait`` steps, warm up ``warmup``, record ``active``; ``repeat`` cycles (0: forever)."""
    wait: int = 1
    warmup: int = 1
    active: int = 3
    repeat: int = 1


# the runner's --profile-*, attach's --wait/--warmup/--active/--repeat, run.json `config.profiler`
DEFAULT_SCHEDULE: Final = ScheduleDefaults()

# --- labels torch adds itself (prefixes) -------------------------------------
TORCH_PROFILER_STEP: Final = "ProfilerStep#"
TORCH_DATALOADER: Final = "enumerate(DataLoader)#"
TORCH_OPTIMIZER: Final = "Optimizer.step#"          # torch.optim's own span around step()
TORCH_DP_FORWARD: Final = "DataParallel.forward"
TORCH_DDP_FORWARD: Final = "DistributedDataParallel.forward"

# --- breakdown categories, in priority order (docs/design.md "The breakdown rules") ----
COMPUTE: Final = "compute"
COMMUNICATION: Final = "communication"
H2D_COPY: Final = "host_to_device"
DATA_LOADING: Final = "data_loading"
HOST_OVERHEAD: Final = "host_overhead"
UNCLASSIFIED: Final = "unclassified"
IDLE: Final = "idle"
CATEGORIES: Final = (COMPUTE, COMMUNICATION, H2D_COPY, DATA_LOADING, HOST_OVERHEAD, UNCLASSIFIED, IDLE)

# --- run.json -----------------------------------------------------------------
RUN_SCHEMA_VERSION: Final = 2              # 2: layer table, CPU allocation, CUDA UUIDs (1 still reads)
RUN_JSON: Final = "run.json"
SAMPLES_CSV: Final = "samples.csv"
TRACE_SUFFIXES: Final = (".pt.trace.json.gz", ".pt.trace.json")
STATUS_RUNNING: Final = "running"
STATUS_COMPLETE: Final = "complete"
STATUS_INTERRUPTED: Final = "interrupted"
STATUS_FAILED: Final = "failed"

# --- samples.csv (long format: time_ns,source,device,metric,value) ----------
SAMPLES_HEADER: Final = ("time_ns", "source", "device", "metric", "value")
SOURCE_NVML: Final = "nvml"   # device = CUDA index as the run saw it ("0", "1", ...)
SOURCE_HOST: Final = "host"   # device = "all" or "cpu<N>"
SOURCE_PROC: Final = "proc"   # device = "main" (the run process) or "children" (all descendants summed)
HOST_ALL: Final = "all"          # host device for whole-machine values
PROC_MAIN: Final = "main"        # proc device: the training process itself
PROC_CHILDREN: Final = "children"  # proc device: all its descendants summed (DataLoader workers, DDP ranks)
PROC_TREE: Final = "tree"          # proc device: the run process and every descendant together
# metric names (units in the name)
GPU_UTIL: Final = "gpu_util_pct"
MEM_UTIL: Final = "mem_util_pct"
MEM_USED: Final = "mem_used_mib"
POWER: Final = "power_w"
SM_CLOCK: Final = "sm_clock_mhz"
PCIE_TX: Final = "pcie_tx_kbps"
PCIE_RX: Final = "pcie_rx_kbps"
TEMPERATURE: Final = "temperature_c"
CPU_PCT: Final = "cpu_pct"            # host: per core 0..100, "all" is the mean; proc: % of one core
CPU_CORES: Final = "cpu_cores"        # proc "tree": cores busy (1.0 = one core fully), to set beside the allocation
RSS: Final = "rss_mib"
NUM_PROCS: Final = "num_procs"


def is_phase_label(name: str) -> bool:
    return name.startswith(PREFIX)
