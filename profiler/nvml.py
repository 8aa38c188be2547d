"""Which NVML device is CUDA device i, and what is it.

CUDA numbers only the devices in ``CUDA_VISIBLE_DEVICES``, in that order, and by
default fastest first; NVML numbers every device on the machine in PCI bus order. So
CUDA index 0 can be NVML index 3, and the only safe key is the UUID. The runner asks
torch for each CUDA index's UUID (:func:`normalise_uuid`) and the sampler matches those
against NVML (:func:`match_uuids`); parsing ``CUDA_VISIBLE_DEVICES`` is the fallback for a
sampler started without that mapping. Parsing and matching are pure functions (tested
without a GPU); only :func:`nvml_devices`, :func:`resolve_handles`, :func:`open_session`,
:func:`inventory` and :func:`describe` touch NVML. Torch-free.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .contract.pcie import pcie_gbps
from .contract.runjson import GpuInfo

__all__ = [
    "VisibleDevice", "NvmlDevice", "NvmlMig", "parse_visible_devices", "match_device", "cuda_to_nvml",
    "normalise_uuid", "match_uuids", "NvmlSession", "open_session", "Inventory", "inventory",
    "describe_all", "nvml_devices", "resolve_handles", "describe", "pcie_max_gbps", "nvml_error_text", "as_text",
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


def normalise_uuid(raw: str) -> str:
    """NVML's spelling of a UUID torch reports: torch gives the bare uuid, NVML "GPU-<uuid>"
    (or "MIG-<uuid>"); an already prefixed value is kept."""
    text = str(raw).strip()
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _bare(uuid: str) -> str:
    u = uuid.strip().lower()
    return u[4:] if u.startswith(("gpu-", "mig-")) else u


def match_uuids(uuids: Sequence[str], devices: list[NvmlDevice]) -> list[tuple[int, NvmlMig | None] | None]:
    """For CUDA index i (with driver UUID ``uuids[i]``): the NVML GPU index and MIG device, or None.

    Compared without the "GPU-"/"MIG-" prefix: torch reports a MIG device's uuid bare, like a
    GPU's, so "GPU-<x>" from :func:`normalise_uuid` still finds NVML's "MIG-<x>". A UUID NVML
    does not list is None (the caller says it is not sampled).
    """
    table: dict[str, tuple[int, NvmlMig | None]] = {}
    for d in devices:
        table.setdefault(_bare(d.uuid), (d.index, None))
        for m in d.migs:
            table.setdefault(_bare(m.uuid), (d.index, m))
    return [table.get(_bare(u)) for u in uuids]


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


def resolve_handles(nv: Any, visible: list[VisibleDevice] | None, n: int, uuids: Sequence[str] | None = None
                    ) -> tuple[list[tuple[int, Any] | None], list[NvmlDevice]]:
    """NVML handles for CUDA devices 0..n-1 as ``(cuda_index, handle)`` (None where unmatched).

    ``uuids`` (CUDA index -> driver UUID, from torch) decides when given; ``visible`` (parsed
    CUDA_VISIBLE_DEVICES) only without it.
    """
    devices = nvml_devices(nv)
    hits = match_uuids(uuids, devices) if uuids is not None else cuda_to_nvml(visible, n, devices)
    out: list[tuple[int, Any] | None] = []
    for i, hit in enumerate(hits):
        if hit is None:
            out.append(None)
            continue
        gpu_index, mig = hit
        if mig is None:
            out.append((i, nv.nvmlDeviceGetHandleByIndex(gpu_index)))
        else:
            out.append((i, nv.nvmlDeviceGetHandleByUUID(mig.uuid)))
    return out, devices


def pcie_max_gbps(gen: int | None, width: int | None) -> float | None:
    """Theoretical one-direction PCIe bandwidth in GB/s (1e9 B/s) of a link, or None."""
    gbps = pcie_gbps(gen, width)
    return round(gbps, 3) if gbps is not None else None


def describe(nv: Any, cuda_index: int, handle: Any) -> GpuInfo:
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
    return GpuInfo(
        index=cuda_index,
        name=as_text(name) if (name := get(nv.nvmlDeviceGetName)) is not None else None,
        uuid=as_text(uuid) if (uuid := get(nv.nvmlDeviceGetUUID)) is not None else None,
        pci_bus_id=as_text(pci.busId) if pci is not None else None,
        memory_total_mib=round(mem.total / 1024 / 1024) if mem is not None else None,
        pcie_link_gen=gen,
        pcie_link_width=width,
        pcie_max_gbps=pcie_max_gbps(gen, width),
        nvlink_links=links,
    )


@dataclass
class NvmlSession:
    """An initialised NVML (``nv`` None when unavailable) and the handles of the run's GPUs."""
    status: str                                   # "ok" | "NVML unavailable: <reason>"
    nv: Any = None
    driver: str | None = None
    handles: list[tuple[int, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.nv is not None:
            try:
                self.nv.nvmlShutdown()
            except Exception:
                pass
            self.nv = None
            self.handles = []


def open_session(n_gpus: int, uuids: Sequence[str] | None = None,
                 cuda_visible_devices: str | None = None) -> NvmlSession:
    """Initialise NVML and find the handle of every CUDA device of the run; never raises.

    With ``uuids`` (one per CUDA index) the handles are matched by UUID; without, by parsing
    ``cuda_visible_devices``. A device NVML lacks is left out with a note.
    """
    try:
        import pynvml as nv
    except ImportError as exc:
        return NvmlSession(f"NVML unavailable: nvidia-ml-py not installed ({exc})")
    try:
        nv.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return NvmlSession(f"NVML unavailable: {nvml_error_text(exc)}")
    session = NvmlSession("ok", nv)
    try:
        session.driver = as_text(nv.nvmlSystemGetDriverVersion())
    except Exception as exc:
        session.notes.append(f"NVML driver version unreadable: {nvml_error_text(exc)}")
    n = len(uuids) if uuids is not None else n_gpus
    if n <= 0:
        return session
    try:
        resolved, _ = resolve_handles(nv, parse_visible_devices(cuda_visible_devices), n, uuids)
    except Exception as exc:
        session.notes.append(f"NVML device lookup failed, no GPU samples: {nvml_error_text(exc)}")
        return session
    for i, hit in enumerate(resolved):
        if hit is not None:
            session.handles.append(hit)
        elif uuids is not None:
            session.notes.append(f"CUDA device {i} (uuid {uuids[i]}) has no matching NVML device; not sampled")
        else:
            session.notes.append(f"CUDA device {i} (CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}) "
                                 "has no matching NVML device; not sampled")
    return session


def describe_all(session: NvmlSession) -> list[GpuInfo]:
    """run.json ``environment.gpus`` for the session's handles (a failure is a note, not an error)."""
    out: list[GpuInfo] = []
    for cuda_index, handle in session.handles:
        try:
            out.append(describe(session.nv, cuda_index, handle))
        except Exception as exc:
            session.notes.append(f"GPU {cuda_index} description failed: {nvml_error_text(exc)}")
    return out


@dataclass
class Inventory:
    """What run.json says about NVML: its status, the driver, the run's GPUs, and notes."""
    status: str
    driver: str | None
    gpus: list[GpuInfo]
    notes: list[str]


def inventory(n_gpus: int, uuids: Sequence[str] | None = None,
              cuda_visible_devices: str | None = None) -> Inventory:
    """A short NVML session of its own: status, driver and one GpuInfo per matched CUDA device."""
    session = open_session(n_gpus, uuids, cuda_visible_devices)
    try:
        return Inventory(session.status, session.driver, describe_all(session), list(session.notes))
    finally:
        session.close()
