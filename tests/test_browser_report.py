"""report/index.html in a real headless Chromium: it renders offline and every plot loads.

Runs `python -m analysis.report <traces> --out <tmp>/report --tensorboard` on a copy of the
tiny CPU sweep, opens the page from file://, and checks from the DOM that the run names
and breakdown categories are shown, that every <img> decoded (naturalWidth > 0), and that
the page asked for nothing but file:// and data: URLs. Screenshots go to the test's tmp dir.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from conftest import run_dirs
from analysis.tensorboard.events import REPORT_EVENTS_NAME
from profiler.contract.vocab import CATEGORIES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")   # Debian package; `make test` installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
LOCAL_SCHEMES = ("file://", "data:", "blob:", "about:")


@dataclass
class Report:
    traces: Path
    out: Path
    run_names: list[str]


def run_report(traces: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "analysis.report", str(traces), "--out", str(out), "--tensorboard", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def findings_in_events(path: Path) -> str:
    texts = [v.tensor.string_val[0].decode() for e in EventFileLoader(str(path)).Load()
             for v in e.summary.value if v.tag == "report/findings"]
    assert len(texts) == 1, texts
    return texts[0]


@pytest.fixture(scope="module")
def report(tiny_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The report of a private copy of the tiny sweep (--tensorboard writes into the run folders)."""
    base = tmp_path_factory.mktemp("report")
    traces = base / "traces"
    names = []
    for src in run_dirs(tiny_runs):
        shutil.copytree(src, traces / src.name, ignore=shutil.ignore_patterns(REPORT_EVENTS_NAME))
        names.append(src.name)
    assert names, f"tiny_runs holds no run folder with traces: {tiny_runs!r}"
    done = run_report(traces, base / "report")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (base / "report" / "index.html").is_file(), done.stdout[-2000:]
    return Report(traces, base / "report", names)


def test_tensorboard_flag_writes_one_events_file_per_run_and_replaces_it(report: Report) -> None:
    def ours() -> dict[str, list[str]]:
        return {name: sorted(p.name for p in (report.traces / name).iterdir() if "scalescope-report" in p.name)
                for name in report.run_names}

    assert ours() == {name: [REPORT_EVENTS_NAME] for name in report.run_names}
    summary = json.loads((report.out / "summary.json").read_text())
    for name in report.run_names:   # the report's own findings for that run reach the Text tab
        text = findings_in_events(report.traces / name / REPORT_EVENTS_NAME)
        for finding in (f for f in summary["findings"] if f["run"] == name):
            assert f"{finding['number']}\\. {finding['text']}" in text
    before = {name: (report.traces / name / REPORT_EVENTS_NAME).stat().st_ino for name in report.run_names}
    done = run_report(report.traces, report.out, "--no-html")
    assert done.returncode == 0, done.stderr[-2000:]
    assert ours() == {name: [REPORT_EVENTS_NAME] for name in report.run_names}   # replaced, not added
    after = {name: (report.traces / name / REPORT_EVENTS_NAME).stat().st_ino for name in report.run_names}
    assert all(after[n] != before[n] for n in report.run_names), "the events file was not rewritten"


@dataclass
class Loaded:
    text: str
    images: list[dict[str, Any]]     # alt, complete, naturalWidth (w), naturalHeight (h)
    requests: list[str]              # every URL the page asked for, in order

    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["w"] <= 0 or i["h"] <= 0]

    def outside_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]


def load(ctx: Any, url: str, shots: Path | None = None) -> Loaded:
    """Open url in a new tab; anything not local is refused, so a CDN link fails fast, never hangs."""
    requests: list[str] = []
    page = ctx.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(LOCAL_SCHEMES)
               else route.abort())
    page.goto(url, wait_until="load", timeout=30_000)
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({alt: e.alt, complete: e.complete, w: e.naturalWidth, h: e.naturalHeight}))")
    text = page.inner_text("body")
    if shots is not None:
        page.screenshot(path=str(shots / "report-top.png"))
        page.screenshot(path=str(shots / "report-full.png"), full_page=True)
    page.close()
    return Loaded(text, images, requests)


@pytest.mark.browser
def test_report_renders_offline_in_chromium(report: Report, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian package `chromium`; `make test` installs it)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    index = report.out / "index.html"
    # control: a page with a broken image and a CDN script, to show the checks below catch both
    control = tmp_path / "control.html"
    control.write_text('<html><body><p>control</p><img src="missing.png" alt="gone">'
                       '<script src="https://cdn.example.org/x.js"></script></body></html>')
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                    headless=True, args=CHROMIUM_ARGS,
                                                    viewport={"width": 1280, "height": 900})
        try:
            got = load(ctx, index.as_uri(), shots=tmp_path)
            bad = load(ctx, control.as_uri())
        finally:
            ctx.close()
    assert [i["alt"] for i in bad.broken_images()] == ["gone"]
    assert bad.outside_requests() == ["https://cdn.example.org/x.js"]

    for name in report.run_names:
        assert name in got.text, f"run {name} not shown in the report"
    missing = [c for c in CATEGORIES if c not in got.text and c.replace("_", " ") not in got.text]
    assert not missing, f"breakdown categories not shown: {missing}"
    assert got.images, "the report has no <img> (plots must be embedded PNGs)"
    assert not got.broken_images(), f"images that did not load: {got.broken_images()}"
    assert got.requests and got.requests[0] == index.as_uri()
    assert not got.outside_requests(), f"the report made network requests: {got.outside_requests()}"
    assert (tmp_path / "report-full.png").stat().st_size > 0
