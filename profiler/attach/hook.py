"""Run `inprocess.activate()` the moment `import torch` finishes, and not before (torch-free).

A meta-path finder sees the first import of "torch", lets the real finders locate it, and wraps
that spec's loader so the activation runs right after torch's own `__init__`. A process that
never imports torch (bash, a data script) is never touched.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

__all__ = ["install"]


class _TorchFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if name != "torch":
            return None
        sys.meta_path.remove(self)           # once; the real finders answer from here on
        spec = importlib.util.find_spec("torch")
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        real_exec = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            real_exec(module)
            try:
                from . import inprocess
                inprocess.activate()
            except Exception as exc:   # never break the user's import of torch
                print(f"scalescope attach: not profiling this process: {type(exc).__name__}: {exc}",
                      file=sys.stderr)

        loader.exec_module = exec_module     # type: ignore[method-assign]
        return spec


def install() -> None:
    if "torch" in sys.modules:               # imported already (by another sitecustomize): activate now
        from . import inprocess
        inprocess.activate()
        return
    if not any(isinstance(f, _TorchFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchFinder())
