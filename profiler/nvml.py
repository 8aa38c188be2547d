"""Which NVML device is CUDA device i, and what is it.

CUDA numbers only the devices in ``CUDA_VISIBLE_DEVICES``, in that order;
NVML numbers every device on the machine. HTCondor hands a job its GPUs as
``CUDA_VISIBLE_DEVICES=GPU-<uuid>,...``, so CUDA index 0 can be NVML index 3:
mapping goes through the UUID. Parsing and matching are pure functions (tested
without a GPU); only :func:`nvml_devices`, :func:`resolve_handles` and
:func:`describe` touch NVML. Torch-free.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "VisibleDevice", "NvmlDevice", "NvmlMig", "parse_visible_devices", "match_device",
    "nvml_devices", "resolve_handles", "describe", "pcie_max_gbps", "nvml_error_text", "as_text",
]

Kind = Literal["index", "gpu_uuid", "mig_uuid", "mig_legacy"]


@dataclass(frozen=True)
class VisibleDevice:
    """One entry of CUDA_VISIBLE_DEVICES as CUDA reads it."""
    kind: Kind
    index: int | None = None          # "index"
    uuid: str | None = None           # "gpu_uuid"/"mig_uuid": full or prefix, with its GPU-/MIG- prefix;
                                      # "mig_legacy": the parent GPU's "GPU-..." uuid
    gpu_instance: int | None = None   # "mig_legacy" only
    compute_instance: int | None = None


@dataclass(frozen=True)
class NvmlMig:
    uuid: str
    gpu_instance: int | None = None
    compute_instance: int | None = None


@dataclass(frozen=True)
class NvmlDevice:
    """A physical GPU as NVML enumerates it, with its MIG devices if any."""
    index: int
    uuid: str
    migs: tuple[NvmlMig, ...] = field(default_factory=tuple)


_INT = re.compile(r"^\d+$")
_LEGACY_MIG = re.compile(r"^MIG-(GPU-[0-9A-Fa-f-]+)/(\d+)/(\d+)$")
_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Fa-f-]+$")


def parse_visible_devices(value: str | None) -> list[VisibleDevice] | None:
    """Parse CUDA_VISIBLE_DEVICES the way the CUDA runtime does.

    ``None`` (unset) means every device in order: returns None. Entries are
    integer indices, ``GPU-<uuid>`` (a unique prefix is enough), ``MIG-<uuid>``,
    or the legacy ``MIG-GPU-<uuid>/<gi>/<ci>``. CUDA stops at the first invalid
    entry (so "-1" or "" hides every device); so does this.
    """
    if value is None:
        return None
    out: list[VisibleDevice] = []
    for raw in value.split(","):
        entry = raw.strip()
        if _INT.match(entry):
            out.append(VisibleDevice("index", index=int(entry)))
        elif m := _LEGACY_MIG.match(entry):
            out.append(VisibleDevice("mig_legacy", uuid=m.group(1), gpu_instance=int(m.group(2)),
                                     compute_instance=int(m.group(3))))
        elif _UUID.match(entry):
            kind: Kind = "gpu_uuid" if entry.startswith("GPU-") else "mig_uuid"
            out.append(VisibleDevice(kind, uuid=entry))
        else:
            break
    return out


def _uuid_matches(prefix: str, uuid: str) -> bool:
    return uuid.lower().startswith(prefix.lower())


def match_device(ref: VisibleDevice, devices: list[NvmlDevice]) -> tuple[int, NvmlMig | None] | None:
    """The (NVML GPU index, MIG device or None) that ``ref`` names, or None if nothing does.

    Integer entries are taken as NVML indices, which equal CUDA's when
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (and on machines whose GPUs are identical).
    A UUID prefix that matches more than one device is ambiguous: None, as CUDA.
    """
    if ref.kind == "index":
        return (ref.index, None) if any(d.index == ref.index for d in devices) else None
    assert ref.uuid is not None
    if ref.kind == "gpu_uuid":
        hits = [d for d in devices if _uuid_matches(ref.uuid, d.uuid)]
        return (hits[0].index, None) if len(hits) == 1 else None
    if ref.kind == "mig_uuid":
        found = [(d.index, m) for d in devices for m in d.migs if _uuid_matches(ref.uuid, m.uuid)]
        return found[0] if len(found) == 1 else None
    # mig_legacy: parent GPU uuid + GPU instance / compute instance ids
    for d in devices:
        if _uuid_matches(ref.uuid, d.uuid):
            for m in d.migs:
                if m.gpu_instance == ref.gpu_instance and m.compute_instance in (None, ref.compute_instance):
                    return d.index, m
    return None


def cuda_to_nvml(visible: list[VisibleDevice] | None, n: int,
                 devices: list[NvmlDevice]) -> list[tuple[int, NvmlMig | None] | None]:
    """For CUDA indices 0..n-1: the matching NVML device, or None where nothing matches."""
    refs = visible if visible is not None else [VisibleDevice("index", index=i) for i in range(len(devices))]
    return [match_device(refs[i], devices) if i < len(refs) else None for i in range(n)]


# --- NVML-touching part --------------------------------------------------------
def nvml_error_text(exc: BaseException) -> str:
    """A one-line reason, e.g. 'NVML Shared Library Not Found'."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def as_text(value: Any) -> str:
    """NVML strings arrive as bytes or str depending on the nvidia-ml-py version."""
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_devices(nv: Any) -> list[NvmlDevice]:
    """Every GPU NVML sees, with MIG devices where MIG mode is on (NVML must be initialised)."""
    out: list[NvmlDevice] = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        migs: list[NvmlMig] = []
        try:
            current, _pending = nv.nvmlDeviceGetMigMode(h)
            if current == nv.NVML_DEVICE_MIG_ENABLE:
                for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
                    try:
                        mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                    except nv.NVMLError:
                        continue
                    gi = _optional(nv, nv.nvmlDeviceGetGpuInstanceId, mh)
                    ci = _optional(nv, nv.nvmlDeviceGetComputeInstanceId, mh)
                    migs.append(NvmlMig(as_text(nv.nvmlDeviceGetUUID(mh)), gi, ci))
        except nv.NVMLError:
            pass                      # no MIG support on this card
        out.append(NvmlDevice(i, as_text(nv.nvmlDeviceGetUUID(h)), tuple(migs)))
    return out


def _optional(nv: Any, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except nv.NVMLError:
        return None


def resolve_handles(nv: Any, visible: list[VisibleDevice] | None, n: int
                    ) -> tuple[list[tuple[int, Any] | None], list[NvmlDevice]]:
    """NVML handles for CUDA devices 0..n-1 as ``(cuda_index, handle)`` (None where unmatched)."""
    devices = nvml_devices(nv)
    out: list[tuple[int, Any] | None] = []
    for i, hit in enumerate(cuda_to_nvml(visible, n, devices)):
        if hit is None:
            out.append(None)
            continue
        gpu_index, mig = hit
        if mig is None:
            out.append((i, nv.nvmlDeviceGetHandleByIndex(gpu_index)))
        else:
            out.append((i, nv.nvmlDeviceGetHandleByUUID(mig.uuid)))
    return out, devices


# GB/s (1e9 bytes/s) per lane per direction after line encoding, by PCIe generation.
_PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


def pcie_max_gbps(gen: int | None, width: int | None) -> float | None:
    """Theoretical one-direction PCIe bandwidth in GB/s (1e9 B/s) of a link, or None."""
    if not gen or not width or gen not in _PCIE_LANE_GBPS:
        return None
    return round(_PCIE_LANE_GBPS[gen] * width, 3)


def describe(nv: Any, cuda_index: int, handle: Any) -> dict[str, Any]:
    """One run.json ``environment.gpus`` entry; fields NVML can't give are None."""
    def get(fn: Any, *args: Any) -> Any:
        try:
            return fn(handle, *args)
        except nv.NVMLError:
            return None

    mem = get(nv.nvmlDeviceGetMemoryInfo)
    pci = get(nv.nvmlDeviceGetPciInfo)
    # the link the card can run (max), which is what the cost model compares with;
    # the current link may be downtrained while the card idles
    gen = get(nv.nvmlDeviceGetMaxPcieLinkGeneration)
    width = get(nv.nvmlDeviceGetMaxPcieLinkWidth)
    links = 0
    for link in range(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            if nv.nvmlDeviceGetNvLinkState(handle, link) == nv.NVML_FEATURE_ENABLED:
                links += 1
        except nv.NVMLError:
            break                                   # not supported / no more links
    return {
        "index": cuda_index,
        "name": as_text(name) if (name := get(nv.nvmlDeviceGetName)) is not None else None,
        "uuid": as_text(uuid) if (uuid := get(nv.nvmlDeviceGetUUID)) is not None else None,
        "pci_bus_id": as_text(pci.busId) if pci is not None else None,
        "memory_total_mib": round(mem.total / 1024 / 1024) if mem is not None else None,
        "pcie_link_gen": gen,
        "pcie_link_width": width,
        "pcie_max_gbps": pcie_max_gbps(gen, width),
        "nvlink_links": links,
    }
