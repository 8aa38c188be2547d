"""The `scalescope` TensorBoard plugin: routes under /data/plugin/scalescope/ and the ES-module frontend.

Loaded by TensorBoard from the `tensorboard_plugins` entry point (pyproject.toml); TensorBoard wraps a
TBPlugin class in its BasicLoader. Importing this module stays cheap (no analysis, no numpy): it runs
at every `tensorboard` start; the analysis is imported on the first request.

Routes: `runs` (the whole dashboard as JSON), `timeline?run=NAME` (one step's lanes of one run),
and the static files (`index.js` and the modules and CSS beside it). Expected failures answer one
JSON line {"error": ...}: 400 for a missing parameter, 404 for an unknown run.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from analysis.dashboard import PLUGIN_NAME
from analysis.dashboard.data import NO_LOGDIR, RunCache, UnknownRun, empty_payload

logger = logging.getLogger(__name__)

STATIC = "static"
MIMETYPES = {".js": "text/javascript", ".css": "text/css"}
ACTIVE_TTL_S = 5.0     # is_active() walks the logdir; TensorBoard asks on every plugins listing

WSGIApp = Callable[..., Any]


def _json(request: wrappers.Request, data: Any, code: int = 200) -> wrappers.Response:
    from profiler.contract.runjson import encode_json   # msgspec: the project's one JSON encoder
    return http_util.Respond(request, encode_json(data, indent=0), "application/json", code=code)


def _error(request: wrappers.Request, message: str, code: int) -> wrappers.Response:
    return _json(request, {"error": " ".join(message.split())}, code)


def static_files() -> dict[str, str]:
    """Route -> file name for every shipped frontend file (package data: analysis/dashboard/static/)."""
    folder = resources.files(__package__).joinpath(STATIC)
    return {f"/{p.name}": p.name for p in folder.iterdir() if p.name.endswith(tuple(MIMETYPES))}


class ScalescopePlugin(base_plugin.TBPlugin):
    """Breakdown, per-device view, phase timeline, findings and what-if of every run under --logdir."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        raw = getattr(context, "logdir", None) or ""
        self._logdir: Path | None = Path(raw).expanduser().resolve() if raw and "://" not in raw else None
        self._why_none = NO_LOGDIR.format(what=repr(raw) if raw else "--logdir_spec or none")
        self._cache = RunCache()
        self._active: tuple[float, bool] = (0.0, False)

    # --- TBPlugin --------------------------------------------------------------------------------

    def get_plugin_apps(self) -> dict[str, WSGIApp]:
        apps: dict[str, WSGIApp] = {"/runs": self._serve_runs, "/timeline": self._serve_timeline}
        for route, name in static_files().items():
            apps[route] = self._static_app(name)
        return apps

    def is_active(self) -> bool:
        """True when the logdir holds at least one scalescope run folder (run.json or a Kineto trace)."""
        if self._logdir is None:
            return False
        now = time.monotonic()
        if now - self._active[0] < ACTIVE_TTL_S:
            return self._active[1]
        from analysis.trace.errors import InputError
        from analysis.run.discover import discover_runs
        try:
            active = self._logdir.is_dir() and bool(discover_runs([self._logdir]))
        except (InputError, OSError):
            active = False
        self._active = (now, active)
        return active

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="scalescope")

    # --- routes ----------------------------------------------------------------------------------

    def _static_app(self, name: str) -> WSGIApp:
        mimetype = MIMETYPES[Path(name).suffix]

        @wrappers.Request.application
        def serve(request: wrappers.Request) -> wrappers.Response:
            body = resources.files(__package__).joinpath(STATIC, name).read_bytes()
            return http_util.Respond(request, body, mimetype)

        return serve

    @wrappers.Request.application
    def _serve_runs(self, request: wrappers.Request) -> wrappers.Response:
        if self._logdir is None:
            return _json(request, empty_payload(None, self._why_none))
        try:
            return _json(request, self._cache.payload(self._logdir))
        except Exception as exc:   # never a traceback in the browser; the log has it
            logger.exception("scalescope: building the dashboard failed")
            return _error(request, f"scalescope: analysis failed: {type(exc).__name__}: {exc}", 500)

    @wrappers.Request.application
    def _serve_timeline(self, request: wrappers.Request) -> wrappers.Response:
        run = request.args.get("run")
        if not run:
            return _error(request, "missing ?run=NAME (a run name as the runs route lists it)", 400)
        if self._logdir is None:
            return _error(request, self._why_none, 404)
        try:
            return _json(request, self._cache.timeline(self._logdir, run))
        except UnknownRun as exc:
            return _error(request, str(exc), 404)
        except Exception as exc:
            logger.exception("scalescope: timeline of %r failed", run)
            return _error(request, f"scalescope: timeline failed: {type(exc).__name__}: {exc}", 500)
