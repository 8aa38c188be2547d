"""The library facade (analysis.api.Analysis) on real torch.profiler traces: the figures a notebook reads
agree with the raw JSON and with what `python -m analysis.report` writes, and bad input is one line."""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from analysis import Analysis
from analysis.findings.figures import FindingKind, RecommendationKind
from analysis.trace.errors import InputError
from analysis.view.phrasing import FINDING_WORDS, RECOMMENDATION_WORDS
from analysis.whatif.profile import WhatIfError
from conftest import REPO, cli_env
from profiler.contract import vocab

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """single-1cpu-b4 (one real CPU trace) and ddp-2cpu-b8 (two real gloo ranks), named by the contract."""
    root = tmp_path_factory.mktemp("traces")
    (root / "single-1cpu-b4").mkdir()
    shutil.copy(DATA / "cpu_single_tiny.pt.trace.json.gz", root / "single-1cpu-b4" / "w.1.pt.trace.json.gz")
    (root / "ddp-2cpu-b8").mkdir()
    for r in (0, 1):
        shutil.copy(DATA / f"ddp_gloo_rank{r}_tiny.pt.trace.json.gz", root / "ddp-2cpu-b8" / f"rank{r}.1.pt.trace.json.gz")
    return root


def _profiler_steps_ms(path: Path) -> list[float]:
    """ProfilerStep#N durations straight from the JSON, in ms: what the breakdown must add up to."""
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    return [e["dur"] / 1e3 for e in events if e.get("ph") == "X" and e.get("name", "").startswith("ProfilerStep#")]


def test_breakdown_adds_up_to_the_profiled_steps_in_the_json(traces: Path) -> None:
    a = Analysis(traces)
    assert [d.name for d in a.run_dirs] == ["ddp-2cpu-b8", "single-1cpu-b4"]
    steps = _profiler_steps_ms(DATA / "cpu_single_tiny.pt.trace.json.gz")
    assert len(steps) == 2                                                # ProfilerStep#2 and #3
    parts = a.breakdown()["single-1cpu-b4"]
    assert set(parts) == set(vocab.CATEGORIES)
    assert sum(parts.values()) == pytest.approx(sum(steps) / len(steps), rel=1e-6)   # µs, read relative to the start
    assert parts[vocab.COMPUTE] > 0 and parts[vocab.COMMUNICATION] == 0    # one process: nothing to communicate
    ddp = a.breakdown()["ddp-2cpu-b8"]
    ranks = [sum(_profiler_steps_ms(DATA / f"ddp_gloo_rank{r}_tiny.pt.trace.json.gz")) / 2 for r in (0, 1)]
    assert sum(ddp.values()) == pytest.approx(sum(ranks) / 2, rel=1e-6)   # the mean over the two ranks
    assert ddp[vocab.COMMUNICATION] > 0                                     # gloo's all-reduce, exposed


def test_per_device_keeps_each_rank_apart(traces: Path) -> None:
    devices = Analysis(traces).per_device()
    assert len(devices["ddp-2cpu-b8"]) == 2 and len(devices["single-1cpu-b4"]) == 1
    for d in devices["ddp-2cpu-b8"]:
        assert d.index == -1 and 0 < d.busy <= 1 and d.busy + d.idle == pytest.approx(1.0, abs=1e-9)


def test_summary_is_what_the_cli_writes(traces: Path, tmp_path: Path) -> None:
    a = Analysis(traces)
    done = subprocess.run([sys.executable, "-m", "analysis.report", str(traces), "--no-html", "--format", "json"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == json.loads(json.dumps(a.summary(), default=str))
    again = Analysis.of_runs(Analysis(traces).runs)                       # runs analysed elsewhere (the dashboard)
    assert again.summary()["runs"] == a.summary()["runs"]
    assert [f.kind for f in a.findings()] == [f["kind"] for f in a.summary()["findings"]]


def test_whatif_through_the_facade(traces: Path) -> None:
    a = Analysis(traces)
    preds = a.whatif(devices=(2, 4))
    assert [(p.input_run, p.target.strategy, p.target.devices) for p in preds] == [
        ("single-1cpu-b4", vocab.DDP, 2), ("single-1cpu-b4", vocab.DDP, 4)]      # a CPU run: DDP only
    assert all(p.target.global_batch == 4 * p.target.devices for p in preds)      # the run's batch per device
    assert all(p.step_ms == pytest.approx(sum(t.ms for t in p.terms)) for p in preds)
    with pytest.raises(WhatIfError, match=r"^unknown GPU 'nope' \(known: .*A100"):
        a.whatif(gpu="nope")


def test_bad_paths_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing: no such file or directory$"):
        Analysis(tmp_path / "missing").runs
    with pytest.raises(InputError, match=r"^no run folders .* found under "):
        Analysis(tmp_path).report


def test_every_kind_has_words_and_nothing_else_does() -> None:
    """The kinds are a typed set: phrasing words each one, and no sentence waits for a kind no rule makes."""
    assert set(FINDING_WORDS) == set(get_args(FindingKind))
    assert set(RECOMMENDATION_WORDS) == set(get_args(RecommendationKind))
    made = set()
    for f in (REPO / "analysis" / "findings").glob("*.py"):
        text = f.read_text()
        for word in get_args(FindingKind) + get_args(RecommendationKind):
            if f'"{word}"' in text.split("Literal[")[0] or f'Finding("{word}"' in text or \
                    f'Recommendation("{word}"' in text or f'm, "{word}"' in text:
                made.add(word)
    assert made == set(get_args(FindingKind)) | set(get_args(RecommendationKind))
