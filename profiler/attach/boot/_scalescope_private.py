"""Load scalescope's `profiler` package by file path under a private name.

Users' projects own names like `profiler`, `models` and `analysis` (on PYTHONPATH, installed, beside the
script); scalescope's code that runs in their processes -- or beside them, as attach's parent does --
must never claim them. Relative imports inside `profiler` make the private copy self-contained.
"""
import importlib
import importlib.util
import os
import sys

PRIVATE = "_scalescope_attach_profiler"
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(submodule: str):
    """`profiler.<submodule>` of this scalescope, imported as `_scalescope_attach_profiler.<submodule>`."""
    if PRIVATE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PRIVATE, os.path.join(PACKAGE_DIR, "__init__.py"),
                                                      submodule_search_locations=[PACKAGE_DIR])
        if spec is None or spec.loader is None:
            raise ImportError(f"no scalescope profiler package at {PACKAGE_DIR}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[PRIVATE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[PRIVATE]
            raise
    return importlib.import_module(f"{PRIVATE}.{submodule}")
