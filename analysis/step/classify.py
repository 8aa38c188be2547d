"""The one table that says what each trace event is, and which breakdown category each kind feeds.

Every rule is (event categories, name pattern) -> kind; the first match wins (RULES).
CATEGORY_OF_KIND then maps kinds to vocab.CATEGORIES in priority order; the breakdown's
totals, the per-device views, the timeline's lanes and scripts/check_runs.py all read
these two tables, so no two of them can disagree. The rules that need more than one
event (DataParallel copies by the span that launched them, CPU compute under the phase
labels) are here too. An event no rule knows is UNKNOWN and ends up in the visible
"unclassified" bucket, never dropped. Both trace forms are listed: torch 2.x categories
(`cpu_op`, `kernel`, ...) and the older ones (`Operator`, `Kernel`, ...).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from analysis.step import intervals as iv
from analysis.trace.reader import Trace
from profiler.contract import vocab


class Kind(IntEnum):
    IGNORE = 0        # overlays that mirror other events: profiler span, GPU annotations, Python frames
    STEP = 1          # ProfilerStep#N on the host: the step window itself
    HOST_OP = 2       # an operator executing on the host
    HOST_LABEL = 3    # a record_function label (ours or torch's): the host is in that phase
    HOST_RUNTIME = 4  # CUDA runtime / driver call (launch, copy, sync)
    HOST_DATA = 5     # host waiting on the DataLoader / DataPipe
    HOST_COMM = 6     # host-side collective (gloo:*, nccl:*, c10d::*)
    HOST_DP_COMM = 7  # DataParallel scatter / replicate (broadcast) / gather / reduce-add on the host
    GPU_COMPUTE = 8   # compute kernel or memset on a GPU
    GPU_COMM = 9      # NCCL kernel, peer or device-to-device copy
    GPU_H2D = 10      # copy between host and device (HtoD, DtoH)
    UNKNOWN = 11      # nothing matched: shown as "unclassified"


GPU_KINDS = (Kind.GPU_COMPUTE, Kind.GPU_COMM, Kind.GPU_H2D)
HOST_KINDS = (Kind.HOST_OP, Kind.HOST_LABEL, Kind.HOST_RUNTIME, Kind.HOST_DATA, Kind.HOST_COMM, Kind.HOST_DP_COMM)

_HOST_CATS = frozenset({"cpu_op", "user_annotation", "Operator", "python_function"})
_OP_CATS = frozenset({"cpu_op", "Operator"})
_ANNOTATION_CATS = frozenset({"user_annotation"})
_RUNTIME_CATS = frozenset({"cuda_runtime", "cuda_driver", "Runtime", "privateuse1_runtime", "privateuse1_driver"})
KERNEL_CATS = frozenset({"kernel", "Kernel"})
MEMCPY_CATS = frozenset({"gpu_memcpy", "Memcpy"})
_MEMSET_CATS = frozenset({"gpu_memset", "Memset"})
_OVERLAY_CATS = frozenset({"Trace", "gpu_user_annotation", "python_function", "cuda_sync", "fwdbwd", "ac2g", "async"})

# DataParallel's communication, by the host span enclosing the launch: torch's autograd
# Functions and their backward nodes (capitalised: aten::gather / ScatterBackward0 are compute)
# and our own labels (not parallel_apply: that is the replicas' compute).
DP_COMM_NAME = re.compile(
    r"(?:^|[\s:])(?:Broadcast|BroadcastCoalesced|ReduceAddCoalesced|Scatter|Gather)(?:Backward)?$"
    r"|^" + "|^".join(re.escape(p) + "$" for p in (vocab.SCATTER, vocab.REPLICATE, vocab.GATHER)))
# collectives, by name: every module that looks for them uses these (classification, straggler, strategy)
NCCL_KERNEL = re.compile(r"^(?:nccl|rccl)|nccl\w*Kernel|ncclDevKernel")
HOST_COLLECTIVE = re.compile(r"^(?:gloo:|nccl:|c10d::|record_param_comms$)")
GLOO_SPAN = re.compile(r"^gloo:")          # gloo's own host span: lasts while the collective runs
ALLREDUCE_OP = re.compile(                 # one all-reduce issued: host op or NCCL kernel (DDP's evidence)
    r"^(?:nccl|gloo):(?:all_reduce|allreduce)|^c10d::allreduce_|ncclDevKernel_AllReduce|ncclKernel_AllReduce")
TORCH_DATALOADER_SPAN = re.compile(r"^" + re.escape(vocab.TORCH_DATALOADER))   # torch's own iterator span
DATA_LOADING = re.compile(
    r"^(?:" + re.escape(vocab.TORCH_DATALOADER) + r"|enumerate\(DataPipe\)#|" + re.escape(vocab.DATA_WAIT) + r"$)")
PROFILER_STEP = re.compile(r"^" + re.escape(vocab.TORCH_PROFILER_STEP) + r"(-?\d+)$")
LABEL_NAME = re.compile(r"^(?:" + re.escape(vocab.PREFIX) + r"|## )")
MEMCPY_KIND = re.compile(r"Memcpy\s+(\w+)")
# a host runtime call that blocks until device work finishes: a GPU idle under it waits on other work, not on the host
SYNC_CALL = re.compile(r"^(?:cuda|hip)(?:Stream|Device|Event)Synchronize$")


@dataclass(frozen=True)
class Rule:
    cats: frozenset[str] | None     # None: any category
    pattern: re.Pattern[str] | None  # None: any name (search, not match)
    kind: Kind
    why: str


RULES: tuple[Rule, ...] = (
    Rule(_HOST_CATS - {"python_function"}, PROFILER_STEP, Kind.STEP, "torch's step window"),
    Rule(_OVERLAY_CATS, None, Kind.IGNORE, "overlay: mirrors the events under it"),
    Rule(_HOST_CATS, DATA_LOADING, Kind.HOST_DATA, "DataLoader / DataPipe next() or our data-wait label"),
    Rule(_HOST_CATS, HOST_COLLECTIVE, Kind.HOST_COMM, "gloo / nccl / c10d collective"),
    Rule(_HOST_CATS, DP_COMM_NAME, Kind.HOST_DP_COMM, "DataParallel scatter / broadcast / gather / reduce-add"),
    Rule(_HOST_CATS, LABEL_NAME, Kind.HOST_LABEL, "record_function label"),
    Rule(_ANNOTATION_CATS, None, Kind.HOST_LABEL, "record_function label"),
    Rule(_OP_CATS, None, Kind.HOST_OP, "host operator"),
    Rule(_RUNTIME_CATS, None, Kind.HOST_RUNTIME, "CUDA runtime / driver call"),
    Rule(KERNEL_CATS, NCCL_KERNEL, Kind.GPU_COMM, "NCCL kernel"),
    Rule(KERNEL_CATS, None, Kind.GPU_COMPUTE, "compute kernel"),
    Rule(MEMCPY_CATS, re.compile(r"PtoP|DtoD"), Kind.GPU_COMM, "peer / device-to-device copy"),
    Rule(MEMCPY_CATS, re.compile(r"HtoD|DtoH|HtoH"), Kind.GPU_H2D, "host <-> device copy"),
    Rule(_MEMSET_CATS, None, Kind.GPU_COMPUTE, "memset on the device"),
)


def classify_one(cat: str, name: str) -> Kind:
    """Kind of one (category, name) pair by the table; UNKNOWN when no rule matches."""
    for r in RULES:
        if (r.cats is None or cat in r.cats) and (r.pattern is None or r.pattern.search(name)):
            return r.kind
    return Kind.UNKNOWN


def classify(trace: Trace) -> NDArray[np.int8]:
    """Kind of every event; the table is applied once per distinct (category, name) pair."""
    if len(trace) == 0:
        return np.empty(0, np.int8)
    n = max(len(trace.names), 1)
    key = trace.cat.astype(np.int64) * n + trace.name
    size = max(len(trace.cats), 1) * n
    if size <= DENSE_KEYS:                 # a lookup table over every (category, name): no sort
        seen = np.zeros(size, bool)
        seen[key] = True
        uniq = np.flatnonzero(seen)
    else:
        uniq, inverse = np.unique(key, return_inverse=True)
    kinds = np.array([classify_one(trace.cats[k // n], trace.names[k % n]) for k in uniq.tolist()], np.int8)
    if size > DENSE_KEYS:
        return kinds[inverse.reshape(-1)]
    table = np.empty(size, np.int8)
    table[uniq] = kinds
    return table[key]


DENSE_KEYS = 1 << 24


def memcpy_kind(name: str) -> str:
    """'Memcpy HtoD (Pageable -> Device)' -> 'HtoD'."""
    m = MEMCPY_KIND.search(name)
    return m.group(1) if m else "other"


def step_number(name: str) -> int | None:
    m = PROFILER_STEP.match(name)
    return int(m.group(1)) if m else None


# Host spans whose CPU ops are compute in a CPU-only trace: our labels, or, in traces
# without them, torch's own autograd / optimizer / module-forward spans.
CPU_COMPUTE_LABELS: tuple[str, ...] = (vocab.FORWARD, vocab.LOSS, vocab.BACKWARD, vocab.OPTIMIZER)
CPU_COMPUTE_TORCH = re.compile(
    r"^(?:autograd::engine::evaluate_function: |Optimizer\.(?:step|zero_grad)#|nn\.Module: |"
    + re.escape(vocab.TORCH_DP_FORWARD) + "|" + re.escape(vocab.TORCH_DDP_FORWARD) + ")")
ALLREDUCE_NAME = re.compile(r"all_?reduce|AllReduce", re.IGNORECASE)


# --- kinds -> breakdown categories ------------------------------------------------------------

@dataclass(frozen=True)
class CategoryRule:
    category: str              # one of vocab.CATEGORIES (idle is what no rule covers)
    kinds: tuple[Kind, ...]
    why: str


CATEGORY_OF_KIND: tuple[CategoryRule, ...] = (
    CategoryRule(vocab.COMPUTE, (Kind.GPU_COMPUTE,),
                 "a compute kernel or memset on any GPU (CPU-only trace: cpu_compute below)"),
    CategoryRule(vocab.COMMUNICATION, (Kind.GPU_COMM, Kind.HOST_COMM),
                 "NCCL kernels, peer / device-to-device copies, DataParallel's copies, host collectives"),
    CategoryRule(vocab.H2D_COPY, (Kind.GPU_H2D,), "copies between host and device"),
    CategoryRule(vocab.DATA_LOADING, (Kind.HOST_DATA,), "the host waiting on the DataLoader"),
    # DataParallel's host side (Python replicate, scatter bookkeeping) is host work; the copies
    # and kernels it launches are communication (dp_comm_launches).
    CategoryRule(vocab.HOST_OVERHEAD, (Kind.HOST_OP, Kind.HOST_LABEL, Kind.HOST_RUNTIME, Kind.HOST_DP_COMM),
                 "the host busy: operators, labels, runtime calls, DataParallel bookkeeping"),
    CategoryRule(vocab.UNCLASSIFIED, (Kind.UNKNOWN,), "events no rule knows: shown, never dropped"),
)
"""Priority order: where activities overlap, an instant goes to the first rule covering it."""

DEVICE_CATEGORY_OF_KIND: tuple[CategoryRule, ...] = tuple(
    CategoryRule(r.category, tuple(k for k in r.kinds if k in GPU_KINDS), r.why)
    for r in CATEGORY_OF_KIND if any(k in GPU_KINDS for k in r.kinds))
"""The same table restricted to one GPU's own events: its compute / communication / host<->device lanes."""


# --- rules over names and categories (masks over a Trace's events) ----------------------------

def name_mask(trace: Trace, pattern: re.Pattern[str] | tuple[str, ...]) -> NDArray[np.bool_]:
    """Per event: its name matches `pattern` (search) or is one of the names in the tuple."""
    ok = [bool(pattern.search(n)) if isinstance(pattern, re.Pattern) else n in pattern for n in trace.names]
    return _coded_mask(trace.name, ok)


def category_mask(trace: Trace, cats: frozenset[str]) -> NDArray[np.bool_]:
    """Per event: its trace category is one of `cats` (e.g. KERNEL_CATS, MEMCPY_CATS)."""
    return _coded_mask(trace.cat, [c in cats for c in trace.cats])


def _coded_mask(codes: NDArray[np.int32], ok: list[bool]) -> NDArray[np.bool_]:
    """Per event: whether its interned value is one of those marked ok (a few: vectorised compares)."""
    hits = [i for i, y in enumerate(ok) if y]
    if len(hits) > 8:
        return np.take(np.array(ok, bool), codes)
    out = np.zeros(codes.shape, bool)
    for i in hits:
        out |= codes == i
    return out


def kind_mask(kind: NDArray[np.int8], *kinds: Kind) -> NDArray[np.bool_]:
    out = np.zeros(kind.shape, bool)
    for k in kinds:                             # vectorised compares beat a lookup table 4x here
        out |= kind == int(k)
    return out


def allreduce_mask(trace: Trace, kind: NDArray[np.int8], on_gpu: bool) -> NDArray[np.bool_]:
    """The all-reduce events: NCCL kernels on a GPU trace, host collectives (gloo) on a CPU one."""
    return name_mask(trace, ALLREDUCE_NAME) & (kind == (Kind.GPU_COMM if on_gpu else Kind.HOST_COMM))


def torch_dataloader_mask(trace: Trace, kind: NDArray[np.int8]) -> NDArray[np.bool_]:
    """torch's own `enumerate(DataLoader)#...` spans (an inclusive phase beside our data-wait label)."""
    return (kind == Kind.HOST_DATA) & name_mask(trace, TORCH_DATALOADER_SPAN)


def spans(trace: Trace, mask: NDArray[np.bool_]) -> iv.Intervals:
    """The merged time covered by the masked events."""
    return iv.union(iv.make(trace.ts[mask], trace.end[mask]))


def dp_comm_launches(trace: Trace, kind: NDArray[np.int8], thread: NDArray[np.int64],
                     launch_ts: NDArray[np.float64], launch_thread: NDArray[np.int64]) -> NDArray[np.bool_]:
    """GPU_COMPUTE events launched inside a DataParallel broadcast / scatter / gather / reduce-add
    span on the same host thread: DataParallel's copies, so communication, not compute.

    `thread` is each event's (pid, tid) key; `launch_ts` / `launch_thread` are, per GPU event,
    the time and thread of the runtime call that launched it (nan / -1 when unlinked).
    """
    out = np.zeros(len(trace), bool)
    dp = kind == Kind.HOST_DP_COMM
    cand = np.flatnonzero((kind == Kind.GPU_COMPUTE) & (launch_thread >= 0))
    if not dp.any() or not len(cand):
        return out
    for t in np.unique(thread[dp]):
        on_t = cand[launch_thread[cand] == t]
        out[on_t[iv.contains(spans(trace, dp & (thread == t)), launch_ts[on_t])]] = True
    return out


def cpu_compute(trace: Trace, kind: NDArray[np.int8], notes: list[str]) -> iv.Intervals:
    """Compute on a CPU-only trace: CPU ops under our forward/loss/backward/optimizer labels; without
    them, under torch's autograd/optimizer/module spans; without those, every op outside data loading.
    Which rule applied is appended to `notes` when it is not the first."""
    ops = spans(trace, kind == Kind.HOST_OP)
    windows = spans(trace, name_mask(trace, CPU_COMPUTE_LABELS) & (kind == Kind.HOST_LABEL))
    if not len(windows):
        windows = spans(trace, name_mask(trace, CPU_COMPUTE_TORCH) & kind_mask(kind, Kind.HOST_LABEL, Kind.HOST_OP))
        if len(windows):
            notes.append("CPU trace without ss: labels: compute = CPU ops under torch's "
                         "autograd/optimizer/module spans")
    if len(windows):
        return iv.intersect(ops, windows)
    notes.append("CPU trace without phase labels: compute = every CPU op outside data loading")
    return iv.subtract(ops, spans(trace, kind == Kind.HOST_DATA))
