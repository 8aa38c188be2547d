"""The scalescope TensorBoard plugin in-process: its routes through werkzeug, its cache, its entry point.

Runs on copies of the session's tiny CPU sweep (single + 2-process DDP) plus one folder with a
corrupt trace. The numbers are compared with analysis.report's own (run_report + to_summary); the
cache is checked by counting calls to the real analyse_run, never by timing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from analysis.api import Analysis
from analysis.run.analyse import analyse_run
from analysis.dashboard import PLUGIN_NAME
from analysis.dashboard.data import RunCache
from analysis.dashboard.plugin import ScalescopePlugin, static_files
from builders.tensorboard import CORRUPT, make_logdir
from conftest import run_dirs
from profiler.contract import vocab

SVG_NS = "http://www.w3.org/2000/svg"     # a name, not a request


@pytest.fixture()
def logdir(tiny_runs: Path, tmp_path: Path) -> Path:
    return make_logdir(tiny_runs, tmp_path)


def plugin_for(logdir: Path | str | None) -> ScalescopePlugin:
    return ScalescopePlugin(base_plugin.TBContext(logdir=None if logdir is None else str(logdir)))


def get(plugin: ScalescopePlugin, route: str, query: str = "") -> tuple[int, Any]:
    resp = Client(plugin.get_plugin_apps()[route]).get(route + (f"?{query}" if query else ""))
    return resp.status_code, json.loads(resp.get_data())


def good_runs(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in payload["runs"] if r["tb_run"] != CORRUPT]


# --- the runs route ------------------------------------------------------------------------------

def test_runs_route_has_the_reports_numbers_and_the_corrupt_run_as_an_error(logdir: Path) -> None:
    code, payload = get(plugin_for(logdir), "/runs")
    assert code == 200
    expected = Analysis([logdir]).summary()
    want = {r["name"]: r for r in expected["runs"]}
    assert sorted(r["tb_run"] for r in payload["runs"]) == sorted([CORRUPT, *(d.name for d in run_dirs(logdir)
                                                                              if d.name != CORRUPT)])
    good = good_runs(payload)
    assert {r["strategy"] for r in good} == {"single", "ddp"} and len(good) == 2
    for r in good:
        assert r["errors"] == [], r["errors"]
        assert r["step_ms"] == pytest.approx(want[r["name"]]["step_ms"], rel=1e-12)
        assert r["images_per_s"] == pytest.approx(want[r["name"]]["images_per_s"], rel=1e-12)
        assert set(r["shares"]) == set(vocab.CATEGORIES)
        assert sum(r["shares"].values()) == pytest.approx(1.0, abs=1e-6)
        assert sum(r["parts_ms"].values()) == pytest.approx(r["step_ms"], rel=1e-6)
        assert r["device_busy"], f"{r['tb_run']}: no per-device figures"
    ddp = next(r for r in good if r["strategy"] == "ddp")
    assert ddp["devices"] == 2 and ddp["speedup"] == pytest.approx(want[ddp["name"]]["speedup"], rel=1e-12)
    (bad,) = [r for r in payload["runs"] if r["tb_run"] == CORRUPT]
    assert bad["step_ms"] is None and len(bad["errors"]) == 1
    assert bad["errors"][0].startswith(f"{CORRUPT}/rank0.1.pt.trace.json.gz: ") and "\n" not in bad["errors"][0]
    assert payload["errors"] == bad["errors"]
    assert [f["text"] for f in payload["findings"]] == [f["text"] for f in expected["findings"]]
    assert [r["text"] for r in payload["recommendations"]] == [r["text"] for r in expected["recommendations"]]
    assert payload["findings"], "the tiny sweep has no finding"
    assert [t["title"] for t in payload["tables"]][0] == "Runs"
    assert payload["colours"].keys() == set(vocab.CATEGORIES)


def test_whatif_rows_predict_from_the_single_run_and_carry_the_measured_error(logdir: Path) -> None:
    _, payload = get(plugin_for(logdir), "/runs")
    single = next(r for r in good_runs(payload) if r["devices"] == 1)
    ddp = next(r for r in good_runs(payload) if r["strategy"] == "ddp")
    rows = payload["whatif"]["rows"]
    assert rows and {p["input_run"] for p in rows} == {single["name"]}
    (checked,) = [p for p in rows if p["measured_run"] is not None]
    (check,) = payload["whatif"]["checks"]          # the report's own check of the same configuration
    assert checked["measured_run"] == ddp["name"] == check["run"]
    assert checked["step_ms"] == pytest.approx(check["predicted_ms"], rel=1e-9)
    assert checked["measured_ms"] == pytest.approx(ddp["step_ms"], rel=1e-12)
    assert checked["error"] == pytest.approx(check["error"], rel=1e-9)
    assert all(p["step_ms"] == pytest.approx(sum(t["ms"] for t in p["terms"]), rel=1e-6) for p in rows)


# --- the timeline route and expected failures ----------------------------------------------------

def test_timeline_route_lanes_fit_the_step(logdir: Path) -> None:
    plugin = plugin_for(logdir)
    _, payload = get(plugin, "/runs")
    for r in good_runs(payload):
        code, tl = get(plugin, "/timeline", f"run={r['tb_run']}")
        assert code == 200 and tl["tb_run"] == r["tb_run"] and tl["lanes"], tl
        assert "step (exclusive)" in {lane["lane"] for lane in tl["lanes"]}
        for lane in tl["lanes"]:
            for a, b, what in lane["spans"]:
                assert 0 <= a < b <= tl["step_ms"] + 1e-6, (lane["lane"], a, b)
                assert what in vocab.CATEGORIES or what.startswith("ss:"), what
    code, tl = get(plugin, "/timeline", f"run={CORRUPT}")
    assert code == 200 and tl["lanes"] == [] and tl["message"]


@pytest.mark.parametrize("query, code, words", [
    ("run=no-such-run", 404, "no run 'no-such-run' under"),
    ("run=../../etc", 404, "no run '../../etc' under"),
    ("", 400, "missing ?run=NAME"),
])
def test_timeline_route_bad_requests_are_one_json_line(logdir: Path, query: str, code: int, words: str) -> None:
    got, body = get(plugin_for(logdir), "/timeline", query)
    assert got == code
    assert list(body) == ["error"] and words in body["error"] and "\n" not in body["error"]
    assert "Traceback" not in body["error"]


def test_without_runs_the_plugin_is_inactive_and_says_how_to_make_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for where in (empty, tmp_path / "missing"):
        plugin = plugin_for(where)
        assert plugin.is_active() is False
        code, payload = get(plugin, "/runs")
        assert code == 200 and payload["runs"] == []
        assert "make demo" in payload["message"] and "python -m models.train" in payload["message"]
    plugin = plugin_for(None)
    assert plugin.is_active() is False
    code, payload = get(plugin, "/runs")
    assert code == 200 and "--logdir" in payload["message"]
    assert get(plugin, "/timeline", "run=x")[0] == 404


def test_is_active_with_a_run_folder(logdir: Path) -> None:
    assert plugin_for(logdir).is_active() is True
    meta = plugin_for(logdir).frontend_metadata()
    assert meta.es_module_path == "/index.js" and meta.element_name is None


# --- the cache -----------------------------------------------------------------------------------

def test_cache_reanalyses_only_the_changed_run(logdir: Path) -> None:
    calls: list[str] = []

    def counting(run_dir: Path) -> Any:        # the real analysis, counted
        calls.append(run_dir.name)
        return analyse_run(run_dir)

    cache = RunCache(analyse=counting)
    first = cache.payload(logdir)
    names = sorted(r["tb_run"] for r in first["runs"])
    assert sorted(calls) == names == sorted(first["analysed"])

    calls.clear()
    again = cache.payload(logdir)
    assert calls == [] and again["analysed"] == []
    assert again["runs"] == first["runs"]

    # a changed trace (new size and mtime) in one run: only that run is analysed again
    single = next(r["tb_run"] for r in good_runs(first) if r["devices"] == 1)
    trace = sorted((logdir / single).glob("*.pt.trace.json*"))[0]
    st = trace.stat()
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    changed = cache.payload(logdir)
    assert calls == [single] and changed["analysed"] == [single]

    # the report's own event file is not an input: rewriting it re-analyses nothing
    calls.clear()
    (logdir / single / "events.out.tfevents.scalescope-report").write_bytes(b"rewritten")
    assert cache.payload(logdir)["analysed"] == [] and calls == []

    # a new run folder: only the new one; its copy gets its parent folder as a prefix (same run name)
    shutil.copytree(logdir / single, logdir / "again" / single)
    grown = cache.payload(logdir)
    assert calls == [single] and grown["analysed"] == [f"again/{single}"]
    assert len(grown["runs"]) == len(names) + 1

    # a folder removed: dropped, nothing analysed
    calls.clear()
    shutil.rmtree(logdir / CORRUPT)
    shrunk = cache.payload(logdir)
    assert calls == [] and CORRUPT not in {r["tb_run"] for r in shrunk["runs"]} and shrunk["errors"] == []


# --- shipping ------------------------------------------------------------------------------------

def test_entry_point_loads_the_plugin_class(tmp_path: Path) -> None:
    """As the `tensorboard` command sees it: a fresh interpreter outside the checkout (a stale, ignored
    scalescope.egg-info in the checkout root would shadow the installed metadata when cwd is the root)."""
    probe = ("import json, sys; from importlib import metadata; from tensorboard.plugins import base_plugin; "
             "(ep,) = [e for e in metadata.entry_points(group='tensorboard_plugins') if e.name == 'scalescope']; "
             "cls = ep.load(); print(json.dumps({'value': ep.value, 'tbplugin': issubclass(cls, base_plugin.TBPlugin), "
             "'name': cls.plugin_name, 'torch': 'torch' in sys.modules}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout) == {"value": "analysis.dashboard.plugin:ScalescopePlugin", "tbplugin": True,
                                      "name": PLUGIN_NAME, "torch": False}


def test_static_modules_import_only_shipped_files_and_nothing_from_the_network() -> None:
    shipped = {name for name in static_files().values()}
    assert {"index.js", "style.css"} <= shipped
    folder = resources.files("analysis.dashboard").joinpath("static")
    for name in sorted(shipped):
        text = folder.joinpath(name).read_text(encoding="utf-8")
        for imported in re.findall(r"""\bfrom\s+["']([^"']+)["']""", text):
            assert imported.startswith("./") and imported[2:] in shipped, (name, imported)
        urls = set(re.findall(r"""https?://[^\s"'`)]+""", text)) | set(re.findall(r"""["'`(]//[^\s"'`)]+""", text))
        assert urls <= {SVG_NS}, f"{name} refers to another host: {urls - {SVG_NS}}"
