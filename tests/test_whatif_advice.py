"""The what-if's cluster advice at its own allocation: each configuration provisioned at the fewest CPUs past
which data loading stops binding, ranked on that, and a fixed point -- asked again at its request_cpus and
workers, the what-if predicts the same numbers and advises the same request."""
from __future__ import annotations

import pytest

from analysis.whatif.advice import advise, provision, provisioned
from analysis.whatif.predict import Target, predict
from analysis.whatif.profile import profile_of
from analysis.whatif.wording import render_text, starved
from builders.runs import gpu_run

LINK = 10.0     # GB/s, stated: no link table in the built run


@pytest.fixture()
def prof():
    """1 GPU, 100 ms steps (forward 20, backward 40, optimizer 10, data_wait 1, host 29 ms), 2 CPU ms per image
    to load, measured with 4 workers on 5 CPUs."""
    return profile_of(gpu_run())


def test_single_needs_two_loader_cores(prof) -> None:
    """64 images × 2 ms = 128 core-ms per batch beside a 99 ms step: 1 core starves it (+29 ms), 2 do not (64 ms)."""
    asked = predict(prof, Target("single", 1, "cuda", 64, 1.0, 4))
    at_three = provision(prof, asked)
    assert (at_three.target.cpus, at_three.target.workers) == (3.0, 4)          # 1 process + 2 loader cores
    assert at_three.step_ms == pytest.approx(predict(prof, Target("single", 1, "cuda", 64, 5.0, 4)).step_ms)
    assert at_three.step_ms == pytest.approx(100.0)
    assert predict(prof, Target("single", 1, "cuda", 64, 2.0, 4)).step_ms == pytest.approx(128.0)  # 1 core: waits


def test_ddp_raises_workers_to_use_the_cores(prof) -> None:
    """2 DDP ranks on 128 images: 256 core-ms per step beside 139 ms of step: 2 loader cores (128 ms) suffice."""
    asked = predict(prof, Target("ddp", 2, "cuda", 128, 2.0, 0, link_gbps=LINK))
    got = provision(prof, asked)
    assert (got.target.cpus, got.target.workers) == (4.0, 1)                  # 2 ranks + 2 cores, a worker each
    assert got.step_ms == pytest.approx(140.0)          # 139 ms + the 1 ms fetch: loading runs beside the step


def test_advice_is_a_fixed_point(prof) -> None:
    targets = [Target("single", 1, "cuda", 64, 1.0, 4), Target("ddp", 2, "cuda", 128, 1.0, 4, link_gbps=LINK)]
    pairs = provisioned([(prof, [predict(prof, t) for t in targets])])
    advice = advise(pairs, peak_rss_mib=3000.0)
    assert [(a.label, a.request_cpus, a.workers) for a in advice] == [
        ("most images per GPU-hour", 3, 4), ("fastest", 4, 4)]
    for a in advice:
        again = predict(prof, Target(a.prediction.target.strategy, a.request_gpus, "cuda",
                                     a.prediction.target.global_batch, float(a.request_cpus), a.workers,
                                     link_gbps=a.prediction.target.link_gbps))
        assert (again.step_ms, again.images_per_s) == pytest.approx((a.prediction.step_ms, a.prediction.images_per_s))
        assert f"request_cpus = {a.request_cpus}" in a.lines and f"WORKERS={a.workers}" in a.lines[-1]
        twice = advise(provisioned([(prof, [again])]), peak_rss_mib=3000.0)[0]
        assert (twice.request_cpus, twice.workers) == (a.request_cpus, a.workers)


def test_the_table_shows_a_starved_request_as_asked_and_advised(prof) -> None:
    preds = [predict(prof, Target("single", 1, "cuda", 64, 1.0, 4)), predict(prof, Target("single", 1, "cuda", 64, 5.0, 4))]
    pairs = provisioned([(prof, preds)])
    assert [a.target.cpus for a, _ in starved(pairs)] == [1.0]               # 5 CPUs already feed the loader
    text = render_text([(prof, preds)], [], advise(pairs, None), pairs=pairs)
    lines = text.splitlines()
    row = lines[lines.index(next(x for x in lines if x.startswith("As asked, and with the advised CPUs"))) + 3]
    assert row.split()[-5:] == ["3", "4", "100.0", "640.0", "2,304,000"]
