"""The scalescope dashboard in a real `tensorboard --logdir` and headless Chromium, offline.

Over the session's tiny CPU sweep (single + 2-process DDP) plus one folder with a corrupt trace:
TensorBoard's plugins listing has `scalescope` enabled as an iframe plugin; its `runs` route has
both runs with the report's step times and shares summing to 1, the corrupt folder as that run's
error, and re-analyses only what changed; Chromium (no network: every request must go to
127.0.0.1) shows each run, one breakdown bar per analysed run and the findings, in light and dark,
on its own and inside TensorBoard's page, where the run filter lives in TensorBoard's URL. The
server is stopped by its process group, pass or fail; screenshots go to the test's tmp dir.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.api import Analysis
from builders.tensorboard import CHROMIUM, CHROMIUM_ARGS, CORRUPT, GARBAGE, Server, get_json, make_logdir, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ENTRY = "/data/plugin_entry.html?name=scalescope"
DARK_BG = "rgb(48, 48, 48)"      # style.css --bg in dark mode
LIGHT_BG = "rgb(255, 255, 255)"


@pytest.fixture(scope="module")
def logdir(tiny_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_logdir(tiny_runs, tmp_path_factory.mktemp("tbdash"))


@pytest.fixture(scope="module")
def server(logdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("tbdash-server")
    # cwd outside the checkout and no PYTHONPATH: the installed entry point is what loads the plugin,
    # as with the `tensorboard` command (a stale egg-info in the checkout root cannot shadow it)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "TMPDIR": str(home)}
    yield from serve(logdir, home, env, cwd=home)


def runs_payload(server: Server) -> dict[str, Any]:
    return get_json(server.url + "/data/plugin/scalescope/runs")


def test_listing_has_scalescope_enabled_as_an_iframe_plugin(server: Server) -> None:
    listing = get_json(server.url + "/data/plugins_listing")
    assert "scalescope" in listing, f"plugin not loaded: {sorted(listing)}\n{server.log.read_text()[-3000:]}"
    entry = listing["scalescope"]
    assert entry["enabled"] is True
    assert entry["loading_mechanism"] == {"type": "IFRAME", "module_path": "/data/plugin/scalescope/index.js"}


def test_runs_route_over_http(server: Server, logdir: Path) -> None:
    payload = runs_payload(server)
    want = {r["name"]: r for r in Analysis([logdir]).summary()["runs"]}
    good = [r for r in payload["runs"] if r["tb_run"] != CORRUPT]
    assert sorted(r["strategy"] for r in good) == ["ddp", "single"]
    for r in good:
        assert r["errors"] == []
        assert r["step_ms"] == pytest.approx(want[r["name"]]["step_ms"], rel=1e-12)
        assert sum(r["shares"].values()) == pytest.approx(1.0, abs=1e-6)
    (bad,) = [r for r in payload["runs"] if r["tb_run"] == CORRUPT]
    assert bad["step_ms"] is None and bad["errors"] and "rank0.1.pt.trace.json.gz" in bad["errors"][0]

    # nothing changed: nothing analysed; the corrupt trace rewritten: that run alone
    assert runs_payload(server)["analysed"] == []
    (logdir / CORRUPT / "rank0.1.pt.trace.json.gz").write_bytes(GARBAGE + b" (rewritten)")
    again = runs_payload(server)
    assert again["analysed"] == [CORRUPT]
    assert [r["step_ms"] for r in again["runs"]] == [r["step_ms"] for r in payload["runs"]]


def test_bad_run_name_is_a_404_with_one_json_line(server: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/data/plugin/scalescope/timeline?run=no-such-run", timeout=10)
    assert err.value.code == 404
    body = err.value.read().decode()
    assert body.startswith('{"error":"no run \'no-such-run\' under') and "\n" not in body.strip()


# --- in Chromium -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (Debian package `chromium`; `make test` installs it)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def offline_page(browser: Any, server: Server, scheme: str, requests: list[str]) -> Any:
    """A page in its own context that records every request and lets only the server's through."""
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000}, color_scheme=scheme)
    page = ctx.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort())
    return page


def outside(requests: list[str], server: Server) -> list[str]:
    return [u for u in requests if not u.startswith(server.url + "/") and not u.startswith(("data:", "blob:"))]


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_dashboard_in_chromium(browser: Any, server: Server, tmp_path: Path, scheme: str) -> None:
    payload = runs_payload(server)
    good = [r["tb_run"] for r in payload["runs"] if r["step_ms"] is not None]
    requests: list[str] = []
    page = offline_page(browser, server, scheme, requests)
    try:
        page.goto(server.url + ENTRY, wait_until="domcontentloaded", timeout=30_000)
        page.locator("g.ss-bar").nth(len(good) - 1).wait_for(timeout=30_000)
        page.locator(".ss-timeline svg").nth(len(good) - 1).wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / f"scalescope-{scheme}.png"), full_page=True)
        bars = page.locator("g.ss-bar").evaluate_all("els => els.map(e => e.dataset.run)")
        rows = page.locator("#ss-runs-table tbody tr[data-run]:not(.ss-error-row)").evaluate_all(
            "els => els.map(e => e.dataset.run)")
        error_rows = page.locator("#ss-runs-table tr.ss-error-row").all_inner_texts()
        findings = page.locator("li.ss-finding").count()
        segments = page.locator("g.ss-bar rect[data-category]").count()
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    finally:
        page.context.close()
    assert sorted(bars) == sorted(good), "one breakdown bar per analysed run"
    assert sorted(rows) == sorted(r["tb_run"] for r in payload["runs"]), "every run in the runs table"
    assert len(error_rows) == 1 and "rank0.1.pt.trace.json.gz" in error_rows[0]
    assert findings == len(payload["findings"]) > 0
    assert segments >= len(good)
    assert background == (DARK_BG if scheme == "dark" else LIGHT_BG)
    assert not outside(requests, server), f"requests outside the server: {outside(requests, server)}"
    assert (tmp_path / f"scalescope-{scheme}.png").stat().st_size > 0


@pytest.mark.browser
def test_dashboard_inside_tensorboard_filters_from_the_url_and_follows_dark_mode(
        browser: Any, server: Server, tmp_path: Path) -> None:
    payload = runs_payload(server)
    ddp = next(r["tb_run"] for r in payload["runs"] if r["strategy"] == "ddp")
    single = next(r["tb_run"] for r in payload["runs"] if r["strategy"] == "single")
    requests: list[str] = []
    page = offline_page(browser, server, "dark", requests)
    try:
        page.goto(f"{server.url}/#scalescope&p.scalescope.filter=ddp", wait_until="domcontentloaded", timeout=30_000)
        frame = page.frame_locator("iframe")
        frame.locator("g.ss-bar").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(tmp_path / "tensorboard-scalescope-dark.png"))
        filtered = frame.locator("g.ss-bar").evaluate_all("els => els.map(e => e.dataset.run)")
        box = frame.locator("#ss-filter").input_value()
        theme = frame.locator("html").get_attribute("data-theme")
        host_dark = page.evaluate("() => document.body.classList.contains('dark-mode')")
        frame.locator("#ss-filter").fill("single")
        frame.locator(f'g.ss-bar[data-run="{single}"]').wait_for(timeout=10_000)
        refiltered = frame.locator("g.ss-bar").evaluate_all("els => els.map(e => e.dataset.run)")
        url = page.url
    finally:
        page.context.close()
    assert filtered == [ddp] and box == "ddp"
    assert refiltered == [single] and url.endswith("#scalescope&p.scalescope.filter=single"), url
    assert host_dark is True and theme == "dark"
    assert not outside(requests, server), f"requests outside the server: {outside(requests, server)}"
