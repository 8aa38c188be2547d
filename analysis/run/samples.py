"""What one run's samples.csv says, computed once from the contract reader's rows.

The summary (means and peaks the table and findings quote) and the series (what the plots
draw) come from the same list of rows, so the file is read once per run and both agree.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from analysis.records import SampleSummary, Series
from profiler.contract import vocab
from profiler.contract.samples import Sample



def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(samples: Sequence[Sample]) -> SampleSummary:
    """The summary and the plot series of one run's rows (in file order)."""
    if not samples:
        return SampleSummary()
    t0 = samples[0].time_ns
    series: dict[tuple[str, str], Series] = defaultdict(dict)
    by: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rss_at: dict[int, float] = defaultdict(float)
    for s in samples:
        ts, vs = series[(s.source, s.metric)].setdefault(s.device, ([], []))
        ts.append((s.time_ns - t0) / 1e9)
        vs.append(s.value)
        by[(s.source, s.metric)][s.device].append(s.value)
        if s.source == vocab.SOURCE_PROC and s.metric == vocab.RSS and s.device in (vocab.PROC_MAIN, vocab.PROC_CHILDREN):
            rss_at[s.time_ns] += s.value

    def per_device(source: str, metric: str, fn) -> dict[str, float]:
        return {d: fn(v) for d, v in sorted(by.get((source, metric), {}).items())}

    gpu = per_device(vocab.SOURCE_NVML, vocab.GPU_UTIL, _mean)
    host = by.get((vocab.SOURCE_HOST, vocab.CPU_PCT), {}).get(vocab.HOST_ALL, [])
    tree = by.get((vocab.SOURCE_PROC, vocab.CPU_CORES), {}).get(vocab.PROC_TREE, [])
    proc = by.get((vocab.SOURCE_PROC, vocab.CPU_PCT), {})
    times = [s.time_ns for s in samples]
    return SampleSummary(
        rows=len(samples), duration_s=(max(times) - min(times)) / 1e9,
        gpu_util_pct=gpu, mean_gpu_util_pct=_mean(list(gpu.values())),
        gpu_mem_used_mib_max=per_device(vocab.SOURCE_NVML, vocab.MEM_USED, max),
        pcie_tx_kbps_max=per_device(vocab.SOURCE_NVML, vocab.PCIE_TX, max),
        pcie_rx_kbps_max=per_device(vocab.SOURCE_NVML, vocab.PCIE_RX, max),
        host_cpu_pct=_mean(host), tree_cpu_cores=_mean(tree), tree_cpu_cores_max=max(tree) if tree else None,
        main_cpu_pct=_mean(proc.get(vocab.PROC_MAIN, [])), children_cpu_pct=_mean(proc.get(vocab.PROC_CHILDREN, [])),
        peak_rss_mib=max(rss_at.values()) if rss_at else None, start_ns=t0, series=dict(series))
