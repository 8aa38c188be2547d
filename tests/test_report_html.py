"""index.html is self-contained (data: PNGs only, no scripts, no fetches, text escaped); summary.json round-trips."""
from __future__ import annotations

import base64
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import pytest

from analysis.records import TimelineSpan
from analysis.view.render import render_text
from analysis.view.model import build_report
from analysis.report.outputs import render_html, write_outputs
from analysis.run.samples import summarise
from analysis.view.reportview import COSTS, DEVICES, build_view
from profiler.contract import vocab
from profiler.contract.samples import read_samples
from builders.runs import SAMPLES, run, run_info, trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("html")


@pytest.fixture(scope="module")
def report(tmp_path: Path):
    (tmp_path / vocab.SAMPLES_CSV).write_text(SAMPLES)
    single = run("single-1gpu-b64", [trace(shares={vocab.COMPUTE: 0.6, vocab.DATA_LOADING: 0.3}, gpus={0: 0.6})],
                 run_info("single-1gpu-b64", "single", 1, 64, images_per_s=100.0, cpus=1),
                 samples=summarise(read_samples(tmp_path / vocab.SAMPLES_CSV)), root=tmp_path)
    dp_tr = trace(shares={vocab.COMPUTE: 0.3, vocab.COMMUNICATION: 0.5}, gpus={0: 0.9, 1: 0.2})
    dp_tr.timeline = [TimelineSpan("gpu 0", 0.0, 50_000.0, vocab.COMPUTE),
                      TimelineSpan("gpu 1", 10_000.0, 30_000.0, vocab.COMMUNICATION),
                      TimelineSpan("host: step phases", 0.0, 60_000.0, vocab.FORWARD)]
    dp_tr.timeline_step = 2
    dp = run("dp-2gpu-b128", [dp_tr], run_info("dp-2gpu-b128", "dp", 2, 128, images_per_s=120.0,
                                               parameter_bytes=10**8), root=tmp_path)
    cpu = run(EVIL, [trace(has_gpu=False, shares={vocab.COMPUTE: 0.5, vocab.COMMUNICATION: 0.2})], root=tmp_path)
    cpu.errors.append(f"{tmp_path}/{EVIL}/rank1.pt.trace.json.gz: not valid JSON")
    return build_report([single, dp, cpu])


@pytest.fixture(scope="module")
def doc(report) -> str:
    return render_html(report)


def test_html_is_self_contained(doc: str) -> None:
    parser = Tags()
    parser.feed(doc)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags and "object" not in tags
    for tag, attrs in parser.tags:
        for key in ("src", "href", "srcset", "action", "data"):
            value = attrs.get(key) or ""
            assert not value.lower().startswith(("http://", "https://", "//")), (tag, key, value[:60])
    assert "url(" not in doc and "@import" not in doc
    imgs = [attrs for tag, attrs in parser.tags if tag == "img"]
    # breakdown + speedup + one utilisation (the only run with samples) + three step timelines
    assert len(imgs) == 6
    for attrs in imgs:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_all_text_is_escaped(doc: str) -> None:
    assert EVIL not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "Errors" in doc and "not valid JSON" in doc


def test_html_renders_the_same_view_as_the_terminal(report, doc: str) -> None:
    view = build_view(report)
    text = render_text(view)
    for f in view.findings + view.recommendations:
        assert f'<li value="{f.number}">{escape(f.text)}</li>' in doc and f"{f.number}. {f.text}" in text
    for title in (COSTS, DEVICES):
        table = view.table(title)
        assert table is not None and table.rows and title in doc and f"{title}:" in text
        for row in table.rows:
            cells = [f'<td class="l">{escape(c)}</td>' if i < table.left else f"<td>{escape(c)}</td>"
                     for i, c in enumerate(row)]
            assert "".join(cells) in doc


def test_summary_json_keeps_figures_and_text(report, tmp_path: Path) -> None:
    out = tmp_path / "report"
    index = write_outputs(report, out)
    assert index == out / "index.html" and index.read_text().startswith("<!DOCTYPE html>")
    loaded = msgspec.json.decode((out / "summary.json").read_bytes())
    assert loaded["schema"] == 2
    by_name = {r["name"]: r for r in loaded["runs"]}
    assert by_name["dp-2gpu-b128"]["speedup"] == 1.2 and by_name["dp-2gpu-b128"]["efficiency"] == 0.6
    assert by_name["dp-2gpu-b128"]["cost_model"]["bytes_per_step"] == 2 * 10**8     # no layer table: params only
    assert by_name["dp-2gpu-b128"]["cost_model"]["complete"] is False
    single = by_name["single-1gpu-b64"]
    assert single["samples"]["tree_cpu_cores"] == 2.5 and "series" not in single["samples"]
    assert single["cpus"] == 1 and single["tree_cpu_cores"] == 2.5
    view = build_view(report)
    assert [(f["number"], f["kind"], f["text"]) for f in loaded["findings"]] == \
        [(f.number, f.kind, f.text) for f in view.findings]
    (sat,) = [f for f in loaded["findings"] if f["kind"] == "cpu_saturated"]
    assert sat["figures"]["tree_cpu_cores"] == 2.5 and sat["figures"]["cpus"] == 1
    assert [r["saving_ms"] for r in loaded["recommendations"]] == [r.saving_ms for r in report.recommendations]
    assert all(r["figures"] for r in loaded["recommendations"])
    assert loaded["errors"] == report.errors
    assert loaded["thresholds"]["comm_share"] == 0.10
