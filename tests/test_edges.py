"""The time at a trace's edges that is no recorded step's training (analysis/step/edges.py).

A built trace pins the rule to the µs; the PyTorch Profiler plugin's real V100 ResNet-50 traces
show why it exists: their span-first steps wait 36-43 ms on GPU work launched before the trace
began, and a span-last step ends with 80 ms in which nothing is recorded (the profiler stopping).
"""
from __future__ import annotations

import pytest
from builders.kineto import TraceBuilder, labelled_trace
from conftest import ANCHORS

from analysis import Analysis
from analysis.step.breakdown import analyse_trace
from profiler.contract import vocab

PLUGIN = ANCHORS / "tb_plugin"


def _edged(tmp_path, head_wait: float, tail_extra: float, steps: int = 4):
    """10 ms steps: a copy launched at +150 µs starts 50 µs later (head_wait later in the first step), forward
    +4..+9 ms with its kernel to +8.5 ms, then 1 ms of untraced loop code in every step; the last step
    runs tail_extra µs longer with nothing recorded."""
    b = TraceBuilder(tid=1)
    for i in range(steps):
        t = i * 10_000
        wait = head_wait if i == 0 else 50
        b.step(i + 5, t, 10_000 + (tail_extra if i == steps - 1 else 0))
        b.op("aten::to", t + 100, 100 + wait)
        b.memcpy("HtoD", t + 150 + wait, 500, launch=t + 150)
        b.label(vocab.FORWARD, t + 4000, 5000)
        b.kernel("sgemm", t + 4200, 4300, launch=t + 4100)
    return analyse_trace(b.write(tmp_path / "w.1.pt.trace.json.gz"))


def test_the_head_wait_and_the_tail_beyond_the_usual_one_are_left_out(tmp_path) -> None:
    a = _edged(tmp_path, head_wait=3000, tail_extra=4000)
    edged = {s.step: s.edge_us for s in a.steps if s.edge_us}
    assert edged == {5: {vocab.HOST_OVERHEAD: pytest.approx(3000)}, 8: {vocab.IDLE: pytest.approx(4000)}}
    assert a.mean_step_us() == pytest.approx((4 * 10_000 + 4000) / 4)           # every step, as the plugin counts
    assert a.steady_step_us() == pytest.approx((4 * 10_000 + 4000 - 3000 - 4000) / 4)    # 9,250 µs
    steady = a.steady_parts_us()
    assert sum(steady.values()) == pytest.approx(9250)
    assert steady[vocab.IDLE] == pytest.approx(a.mean_parts_us()[vocab.IDLE] - 1000)
    assert [n for n in a.notes if "left out" in n] == [
        "step 5: 3.0 ms waiting on GPU work launched before the trace began (an unrecorded step's), "
        "left out of the run's step time",
        "step 8: 4.0 ms at its end with no recorded event (the profiler stopping), left out of the run's step time"]


def test_waits_and_tails_every_step_has_are_no_edge(tmp_path) -> None:
    a = _edged(tmp_path, head_wait=900, tail_extra=900)       # under 1 ms beyond the usual: noise
    assert [s.edge_us for s in a.steps] == [{}, {}, {}, {}]
    assert a.steady_step_us() == a.mean_step_us()
    plain = analyse_trace(labelled_trace(n_steps=3).write(tmp_path / "p.1.pt.trace.json.gz"))
    assert plain.steady_step_us() == plain.mean_step_us() == pytest.approx(1000)


@pytest.mark.skipif(not PLUGIN.is_dir(), reason=f"peer reference traces not present at {PLUGIN}")
def test_the_plugin_traces_edges_and_the_run_step() -> None:
    four = Analysis(PLUGIN / "resnet50_num_workers_4")
    edged = {s.step: {c: round(v / 1e3, 1) for c, v in s.edge_us.items()}
             for t in four.runs[0].traces for s in t.steps if s.edge_us}
    assert edged == {5: {vocab.HOST_OVERHEAD: 36.4}, 16: {vocab.HOST_OVERHEAD: 42.9}, 21: {vocab.IDLE: 80.4}}
    m = four.metrics[0]
    assert m.step_ms == pytest.approx(128.63, abs=0.01)           # (12 × 141.94 − 159.7) / 12
    assert sum(m.parts_ms.values()) == pytest.approx(m.step_ms)
    assert "the step leaves out 13.3 ms per step at the traces' edges (their notes say where): 141.9 ms with it" in m.notes
    zero = Analysis(PLUGIN / "resnet50_num_workers_0")
    assert zero.metrics[0].step_ms == pytest.approx(165.66, abs=0.01)        # step 16 waited 7.1 ms
