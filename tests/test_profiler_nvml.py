"""CUDA index -> NVML device mapping by driver UUID and by CUDA_VISIBLE_DEVICES (pure), and NVML
itself where a GPU exists."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from profiler import nvml as nm
from profiler.contract import vocab
from profiler.contract.runjson import GpuInfo
from profiler.nvml import (NvmlDevice, NvmlMig, VisibleDevice, cuda_to_nvml, match_device, match_uuids,
                           normalise_uuid, parse_visible_devices)

U0 = "GPU-5a6b7c8d-0000-1111-2222-333344445555"
U1 = "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
U2 = "GPU-5a6bffff-0000-1111-2222-999999999999"
MIG_A = "MIG-11111111-2222-3333-4444-555555555555"
MIG_B = "MIG-66666666-7777-8888-9999-000000000000"
MACHINE = [
    NvmlDevice(0, U0),
    NvmlDevice(1, U1, (NvmlMig(MIG_A, 1, 0), NvmlMig(MIG_B, 2, 0))),
    NvmlDevice(2, U2),
]


def test_unset_means_identity() -> None:
    assert parse_visible_devices(None) is None
    assert cuda_to_nvml(None, 2, MACHINE) == [(0, None), (1, None)]


def test_htcondor_uuid_form_maps_by_uuid_not_position() -> None:
    refs = parse_visible_devices(f"{U2},{U0}")
    assert refs == [VisibleDevice("gpu_uuid", uuid=U2), VisibleDevice("gpu_uuid", uuid=U0)]
    # CUDA device 0 is NVML device 2
    assert cuda_to_nvml(refs, 2, MACHINE) == [(2, None), (0, None)]


def test_integer_indices_and_whitespace() -> None:
    refs = parse_visible_devices(" 2, 0")
    assert refs == [VisibleDevice("index", index=2), VisibleDevice("index", index=0)]
    assert cuda_to_nvml(refs, 2, MACHINE) == [(2, None), (0, None)]


def test_unique_uuid_prefix_matches_and_ambiguous_prefix_does_not() -> None:
    assert match_device(VisibleDevice("gpu_uuid", uuid="GPU-9f8e"), MACHINE) == (1, None)
    # "GPU-5a6b" starts both U0 and U2: CUDA refuses it, so do we
    assert match_device(VisibleDevice("gpu_uuid", uuid="GPU-5a6b"), MACHINE) is None


def test_mig_uuid_and_legacy_mig_forms() -> None:
    refs = parse_visible_devices(f"{MIG_B},MIG-{U1}/1/0")
    assert refs is not None
    assert refs[0].kind == "mig_uuid"
    assert refs[1] == VisibleDevice("mig_legacy", uuid=U1, gpu_instance=1, compute_instance=0)
    assert cuda_to_nvml(refs, 2, MACHINE) == [(1, MACHINE[1].migs[1]), (1, MACHINE[1].migs[0])]


def test_parsing_stops_at_the_first_invalid_entry_like_cuda() -> None:
    assert parse_visible_devices("0,-1,1") == [VisibleDevice("index", index=0)]
    assert parse_visible_devices("") == []
    assert parse_visible_devices("-1") == []
    assert parse_visible_devices("NoDevFiles") == []      # what HTCondor sets when no GPU is assigned


def test_more_cuda_devices_than_visible_or_unknown_gpu_gives_none() -> None:
    refs = parse_visible_devices(f"{U1},GPU-deadbeef")
    assert cuda_to_nvml(refs, 3, MACHINE) == [(1, None), None, None]
    assert cuda_to_nvml(parse_visible_devices("7"), 1, MACHINE) == [None]


def test_torch_uuids_get_nvml_spelling() -> None:
    assert normalise_uuid(U0[4:]) == U0                  # torch reports the bare uuid
    assert normalise_uuid(U0) == U0 and normalise_uuid(MIG_A) == MIG_A
    assert normalise_uuid(" 5a6b7c8d ") == "GPU-5a6b7c8d"


def test_uuid_mapping_follows_the_driver_not_the_index_order() -> None:
    # CUDA orders fastest first: CUDA 0 is NVML 2, CUDA 1 is NVML 0
    assert match_uuids([normalise_uuid(U2[4:]), normalise_uuid(U0[4:])], MACHINE) == [(2, None), (0, None)]


def test_uuid_mapping_finds_mig_devices_even_when_torch_spells_them_gpu() -> None:
    assert match_uuids([MIG_B], MACHINE) == [(1, MACHINE[1].migs[1])]
    assert match_uuids([normalise_uuid(MIG_A[4:])], MACHINE) == [(1, MACHINE[1].migs[0])]
    assert match_uuids([U1.upper()], MACHINE) == [(1, None)]


def test_a_uuid_nvml_lacks_is_not_sampled_and_no_prefix_guessing() -> None:
    # a whole uuid is required: unlike CUDA_VISIBLE_DEVICES, a prefix never matches
    assert match_uuids([U0, "GPU-deadbeef-0000-0000-0000-000000000000", "GPU-5a6b"], MACHINE) == \
        [(0, None), None, None]


class FakeNvml:
    """The slice of pynvml that open_session uses: a driver with MACHINE's GPUs, no MIG mode query."""

    class NVMLError(Exception):
        pass

    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self) -> None:
        self.shutdown = False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: self.shutdown = True
    def nvmlSystemGetDriverVersion(self) -> str: return "550.54.15"
    def nvmlDeviceGetCount(self) -> int: return len(MACHINE)
    def nvmlDeviceGetHandleByIndex(self, i: int) -> str: return f"h{i}"
    def nvmlDeviceGetHandleByUUID(self, u: str) -> str: return f"h:{u}"
    def nvmlDeviceGetUUID(self, h: str) -> bytes: return MACHINE[int(h[1:])].uuid.encode()
    def nvmlDeviceGetMigMode(self, h: str) -> tuple[int, int]: raise self.NVMLError("not supported")


def test_open_session_notes_the_cuda_device_nvml_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole lookup without a GPU: the driver double stands in for libnvidia-ml only."""
    import sys
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    session = nm.open_session(0, [U2, "GPU-00000000-dead-beef-0000-000000000000", U0],
                              cuda_visible_devices="0,1,2")
    assert session.status == "ok" and session.driver == "550.54.15"
    assert session.handles == [(0, "h2"), (2, "h0")]        # CUDA index -> the handle of its UUID's GPU
    assert session.notes == ["CUDA device 1 (uuid GPU-00000000-dead-beef-0000-000000000000) has no matching "
                             "NVML device; not sampled"]
    session.close()
    assert fake.shutdown and session.handles == []


@pytest.mark.parametrize(("gen", "width", "gbps"), [(3, 16, 15.76), (4, 16, 31.504), (5, 8, 31.504),
                                                     (None, 16, None), (4, 0, None), (9, 16, None)])
def test_pcie_bandwidth(gen: int | None, width: int | None, gbps: float | None) -> None:
    assert nm.pcie_max_gbps(gen, width) == gbps


# --- real NVML: runs where a GPU and its driver exist, skipped with the reason elsewhere ---
def _nvml_reason() -> str | None:
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as exc:
        return f"NVML unavailable here: {nm.nvml_error_text(exc)}"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "NVML works but sees no GPU"
    finally:
        pynvml.nvmlShutdown()
    return None


NVML_SKIP = _nvml_reason()


@pytest.mark.gpu
@pytest.mark.skipif(NVML_SKIP is not None, reason=NVML_SKIP or "")
def test_real_nvml_uuid_mapping_and_inventory() -> None:
    import pynvml
    pynvml.nvmlInit()
    try:
        devices = nm.nvml_devices(pynvml)
        last = devices[-1]
        # address the last GPU by UUID as HTCondor would: it becomes CUDA device 0
        resolved, _ = nm.resolve_handles(pynvml, parse_visible_devices(last.uuid), 1)
        assert resolved[0] is not None
        cuda_index, handle = resolved[0]
        info = nm.describe(pynvml, cuda_index, handle)
        assert isinstance(info, GpuInfo)
        assert info.index == 0 and info.uuid == last.uuid
        assert info.name and info.memory_total_mib and info.memory_total_mib > 0
        # and by UUID, the way the runner hands torch's UUIDs to the sampler
        by_uuid, _ = nm.resolve_handles(pynvml, None, 1, [last.uuid])
        assert by_uuid[0] is not None and nm.describe(pynvml, 0, by_uuid[0][1]).uuid == last.uuid
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.gpu
@pytest.mark.skipif(NVML_SKIP is not None, reason=NVML_SKIP or "")
def test_real_sampler_writes_nvml_rows(tmp_path: Path) -> None:
    from profiler.sampler import Sampler, SamplerConfig
    csv_path = tmp_path / vocab.SAMPLES_CSV
    with Sampler(SamplerConfig(csv_path=str(csv_path), period_s=0.05, n_gpus=1)) as s:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "nvml,0," not in csv_path.read_text():
            time.sleep(0.05)
    assert s.nvml_status == "ok"
    assert s.gpu_inventory() and s.gpu_inventory()[0].index == 0
    text = csv_path.read_text()
    assert f"nvml,0,{vocab.GPU_UTIL}," in text and f"nvml,0,{vocab.MEM_USED}," in text
    # a metric a card lacks is dropped with a note, never an error row
    assert not [n for n in s.notes if "failed" in n], s.notes
