"""`scalescope-attach` / `python -m scalescope_attach`: profiler.attach under a name no project owns.

`python -m profiler.attach` finds the first `profiler` on the path; a project with its own `profiler`
module on PYTHONPATH (a `src/` layout) shadows scalescope's. This entry point loads scalescope's
package by file path under a private name instead, so it runs whatever the user's path holds.
"""
from __future__ import annotations

import importlib.util
import os
import sys

_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiler", "attach", "boot",
                     "_scalescope_private.py")


def main(argv: list[str] | None = None) -> int:
    spec = importlib.util.spec_from_file_location("_scalescope_private", _BOOT)
    if spec is None or spec.loader is None:
        print(f"error: scalescope's profiler package is missing ({_BOOT})", file=sys.stderr)
        return 2
    private = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(private)
    return int(private.load("attach.cli").main(argv))


if __name__ == "__main__":
    sys.exit(main())
