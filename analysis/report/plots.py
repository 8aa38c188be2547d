"""The report's figures as PNG bytes (matplotlib's Agg backend, no display, no pyplot state).

Each function returns None when the data for its figure is absent, so the HTML can say so
instead of drawing an empty chart.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False    # run names are literal text: "run$\\x{$" is not mathtext
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

from analysis.records import RunAnalysis  # noqa: E402
from analysis.run.scaling import RunMetrics  # noqa: E402
from analysis.palette import COLOURS, PHASE_COLOURS  # noqa: E402
from analysis.step.timeline import dominant_runs, median_step  # noqa: E402
from profiler.contract import vocab  # noqa: E402

DPI = 100


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def breakdown_png(metrics: Sequence[RunMetrics]) -> bytes | None:
    """Stacked horizontal bar per run: share of the step in each breakdown category, step ms at the end."""
    rows = [m for m in metrics if m.step_ms_source == "trace"]
    if not rows:
        return None
    fig = Figure(figsize=(9, 0.45 * len(rows) + 1.8))
    ax = fig.add_subplot()
    labels = [m.name for m in rows]
    left = [0.0] * len(rows)
    for cat in vocab.CATEGORIES:
        vals = [m.shares.get(cat, 0.0) * 100 for m in rows]
        if not any(vals):
            continue
        ax.barh(labels, vals, left=left, color=COLOURS[cat], label=cat.replace("_", " "))
        left = [a + b for a, b in zip(left, vals)]
    for y, m in enumerate(rows):
        ax.text(101, y, f"{m.step_ms:.1f} ms", va="center", fontsize=8)
    ax.set_xlim(0, 115)
    ax.set_xticks(range(0, 101, 20))
    ax.invert_yaxis()
    ax.set_xlabel("% of the step's wall time (mean of the profiled steps); step time at the right")
    ax.set_title("Where each step's wall time goes")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)


def speedup_png(metrics: Sequence[RunMetrics]) -> bytes | None:
    """Speedup of images/s against the 1-device run, per strategy and device type, with ideal."""
    groups: dict[str, list[RunMetrics]] = {}
    for m in metrics:
        if m.speedup is not None:
            groups.setdefault(f"{m.strategy} ({m.device_type})", []).append(m)
    if not groups or max(m.devices for ms in groups.values() for m in ms) <= 1:
        return None
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    top = max(m.devices for ms in groups.values() for m in ms)
    ax.plot([1, top], [1, top], "--", color="#757575", label="ideal (linear)")
    for label, ms in sorted(groups.items()):
        ms = sorted(ms, key=lambda m: m.devices)
        xs, ys = [m.devices for m in ms], [m.speedup for m in ms]
        if xs[0] > 1:                        # start each line at its 1-device baseline
            xs, ys = [1] + xs, [1.0] + ys
        ax.plot(xs, ys, "o-", label=label)
    ax.set_xlabel("devices")
    ax.set_ylabel("speedup of images/s vs 1 device")
    ax.set_xticks(sorted({m.devices for ms in groups.values() for m in ms} | {1}))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Speedup vs ideal")
    return _png(fig)


def utilisation_png(run: RunAnalysis, m: RunMetrics | None = None) -> bytes | None:
    """NVML GPU utilisation per device (%), and the process tree's CPU in cores with the job's allocation
    as a line, on separate axes: a % of all cores and a % of one core never share a scale."""
    s = run.samples
    gpu = s.series_of(vocab.SOURCE_NVML, vocab.GPU_UTIL)
    tree = s.series_of(vocab.SOURCE_PROC, vocab.CPU_CORES).get(vocab.PROC_TREE)
    if not gpu and tree is None:
        return None
    panels = (1 if gpu else 0) + (1 if tree is not None else 0)
    fig = Figure(figsize=(8, 2.4 * panels + 0.4))
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    i = 0
    if gpu:
        ax = axes[i]
        for dev, (ts, vs) in sorted(gpu.items()):
            ax.plot(ts, vs, label=f"GPU {dev}", linewidth=1)
        ax.set_ylabel("GPU utilisation (%)")
        ax.set_ylim(0, 105)
        i += 1
    if tree is not None:
        ax = axes[i]
        ax.plot(tree[0], tree[1], label="process tree (run + workers + ranks)", linewidth=1, color="#1565c0")
        top = max(tree[1], default=1.0)
        cpus = m.cpus if m is not None else None
        if cpus is not None:
            ax.axhline(cpus, color="#c62828", linestyle="--", linewidth=1,
                       label=f"job's CPU allocation ({cpus:g}, {m.cpus_source})" if m is not None else "allocation")
            top = max(top, cpus)
        ax.set_ylabel("CPU (cores)")
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set_xlabel("seconds since the first sample")
    axes[0].set_title(f"{run.name}: utilisation over time")
    return _png(fig)




def timeline_png(run: RunAnalysis) -> bytes | None:
    """One step's lanes (each GPU, host phases) from TraceAnalysis.timeline; else that step's parts."""
    traces = [t for t in run.traces if t.steps]
    if not traces:
        return None
    t = next((x for x in traces if x.timeline), traces[0])
    fig = Figure(figsize=(9, 1.8))
    ax = fig.add_subplot()
    colour_of: dict[str, str] = dict(COLOURS)
    if t.timeline:
        lanes = sorted({s.lane for s in t.timeline}, key=lambda x: (not x.startswith("gpu"), x))
        fig.set_size_inches(9, 0.45 * len(lanes) + 1.4)
        for s in t.timeline:
            if s.label not in colour_of:
                colour_of[s.label] = PHASE_COLOURS[(len(colour_of) - len(COLOURS)) % len(PHASE_COLOURS)]
        width = next((st.wall_us for st in t.steps if st.step == t.timeline_step),
                     max(sp.end_us for sp in t.timeline))
        for y, lane in enumerate(lanes):
            spans = [(sp.start_us, sp.end_us, sp.label) for sp in t.timeline if sp.lane == lane]
            runs = dominant_runs(spans, width)
            for label in sorted({lab for _, _, lab in runs}):
                bars = [(a / 1e3, (b - a) / 1e3) for a, b, lab in runs if lab == label]
                ax.broken_barh(bars, (y - 0.4, 0.8), color=colour_of[label], label=label, linewidth=0)
        ax.set_yticks(range(len(lanes)), lanes)
        step = t.timeline_step
        title = (f"{run.name} ({t.worker}): step {step if step is not None else ''} (median wall); "
                 "each column shows what covers most of it, blank = idle")
    else:
        s = t.steps[median_step(t)]
        x = 0.0
        for cat in vocab.CATEGORIES:
            v = s.parts_us.get(cat, 0.0) / 1e3
            if v > 0:
                ax.broken_barh([(x, v)], (-0.4, 0.8), color=COLOURS[cat], label=cat.replace("_", " "))
                x += v
        ax.set_yticks([0], ["step parts"])
        title = (f"{run.name} ({t.worker}): step {s.step} by category "
                 "(totals placed end to end; no per-event timeline in this analysis)")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("ms from the step's start")
    ax.set_title(title, fontsize=10)
    ax.invert_yaxis()
    return _png(fig)
