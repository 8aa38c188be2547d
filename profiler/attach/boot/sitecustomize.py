"""scalescope's bootstrap for `python -m profiler.attach`: the only folder attach puts on PYTHONPATH.

It claims no top-level name a user could own: the in-process code (the `profiler` package this
file sits in) is loaded by file path under a private name (`_scalescope_private`), so the user's own
`models`, `profiler` or `analysis` -- on PYTHONPATH, installed, or beside the script -- still win. It only arms a hook that
profiles the process once it imports torch (`hook`), then runs whatever sitecustomize this one
shadows, so a site's or a conda env's own setup still runs.
"""
import os
import sys

def _chain() -> None:
    import importlib.machinery
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if os.environ.get("SCALESCOPE_ATTACH"):
    try:
        import _scalescope_private
        _scalescope_private.load("attach.hook").install()
    except Exception as exc:   # a broken bootstrap must never stop the user's program
        print(f"scalescope attach: bootstrap failed, not profiling: {type(exc).__name__}: {exc}", file=sys.stderr)
_chain()
