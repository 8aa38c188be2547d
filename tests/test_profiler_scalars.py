"""samples.csv -> TensorBoard scalars, read back by TensorBoard's own event reader."""
from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from profiler.contract import vocab
from profiler.contract.samples import SamplesError
from profiler.scalars import samples_to_scalars, scalar_tag

T0 = 1_795_000_000_000_000_000
CSV = f"""time_ns,source,device,metric,value
{T0},host,all,cpu_pct,50
{T0},host,cpu0,cpu_pct,80
{T0},host,cpu1,cpu_pct,20
{T0},proc,children,cpu_pct,190.5
{T0 + 100_000_000},nvml,0,gpu_util_pct,97
{T0 + 100_000_000},nvml,1,gpu_util_pct,12
{T0 + 100_000_000},nvml,1,power_w,nan
{T0 + 200_400_000},host,all,cpu_pct,75
{T0 + 200_400_000},proc,main,rss_mib,1024.5
{T0 + 300_000_000},host,all,cpu_pc
"""


def test_tags() -> None:
    assert scalar_tag("nvml", "2", vocab.PCIE_TX) == "nvml/gpu2/pcie_tx_kbps"
    assert scalar_tag("host", "all", vocab.CPU_PCT) == "host/cpu_pct"
    assert scalar_tag("host", "cpu7", vocab.CPU_PCT) is None
    assert scalar_tag("proc", "children", vocab.NUM_PROCS) == "proc/children/num_procs"


def test_scalars_round_trip_through_tensorboard(tmp_path: Path) -> None:
    csv_path = tmp_path / vocab.SAMPLES_CSV
    csv_path.write_text(CSV)
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    n = samples_to_scalars(csv_path, writer)
    writer.close()
    # per-core rows, the NaN and the line cut short by a kill are not plotted
    assert n == 6
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"host/cpu_pct", "proc/children/cpu_pct", "nvml/gpu0/gpu_util_pct",
                                          "nvml/gpu1/gpu_util_pct", "proc/main/rss_mib"}
    cpu = acc.Scalars("host/cpu_pct")
    assert [(e.step, e.value) for e in cpu] == [(0, 50.0), (200, 75.0)]   # step = ms since first sample
    assert cpu[1].wall_time == pytest.approx((T0 + 200_400_000) / 1e9)
    assert [(e.step, e.value) for e in acc.Scalars("nvml/gpu0/gpu_util_pct")] == [(100, 97.0)]


def test_not_a_samples_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(SamplesError, match="not a samples.csv"):
        samples_to_scalars(p, SummaryWriter(log_dir=str(tmp_path / "tb")))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert samples_to_scalars(empty, SummaryWriter(log_dir=str(tmp_path / "tb"))) == 0
