"""Inside an attached process: profile it as the runner profiles its own, without its code.

Loaded under a private package name (see `boot/sitecustomize.py`), activated right after
`import torch` (see `hook`). Every process of the tree that imports torch gets the patches
(`patches`, which report here what the process does); what it *does* decides whether it is
profiled, never how it was started:
- a process started by exec (the script, a rank torchrun or a shell wrapper started) is armed at
  once; a multiprocessing child (torch.multiprocessing.spawn / start_processes, multiprocessing.Process
  by fork, spawn or forkserver) stays dormant until it trains -- initialises a process group, builds an
  optimizer or steps one. DataLoader workers never do, so they are never profiled.
- an armed process records from its first module forward until its first optimizer step (so an
  inference script, which never steps, still gets a trace: one step covering the run); at that step
  the recording is dropped and the scheduled session starts, advanced by every step of the first
  optimizer (`register_optimizer_step_post_hook`). The steps before it count as the first `wait`.
- the optimizer step, `Tensor.backward` and the trained module's forward carry the contract's labels;
  so do nn.DataParallel's scatter / replicate / parallel_apply / gather, as `LabelledDataParallel` does;
- what the process saw goes to a `ProcessReport` for the parent; the trace is flushed on a normal
  exit, an exception (atexit, or multiprocessing's finalizers in a child that ends by `os._exit`),
  SIGTERM, and after `--steps` / `--duration`.

The profiler sessions are `tracing`'s, the ways out that flush `exits`'s; this module decides when.

Kineto does not survive fork: a process forked from one that has run the profiler hangs when it
records. Nothing is recorded before a forward, so a launcher that forks its ranks first is safe;
a rank forked after its parent recorded is reported, with a note, but not traced.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import msgspec
import torch
from torch import nn
from torch.profiler import record_function

from ..contract import vocab
from ..modeltable import describe
from ..session import cuda_devices
from . import patches
from .command import helper_role
from .exits import ExitHooks, QuietChildren
from .patches import _labelled  # noqa: F401  (tests label a method through it)
from .report import ENV, AttachSettings, ProcessReport, write_report
from .tracing import Tracer, dist_rank, kineto_used

__all__ = ["activate", "Attached"]

_ACTIVE: "Attached | None" = None


def _call(method: str, *args: Any) -> None:
    """What a patch or hook saw, to this process's state (a fork gets a fresh one)."""
    state = _ACTIVE
    if state is not None:
        getattr(state, method)(*args)


def _mp_child(argv: list[str]) -> bool:
    """A process multiprocessing started (spawn / forkserver: still unpickling its target now)."""
    if "--multiprocessing-fork" in argv:
        return True
    try:
        return bool(getattr(multiprocessing.current_process(), "_inheriting", False)) \
            or multiprocessing.parent_process() is not None
    except Exception:
        return False


def activate() -> None:
    """Patch this process once; arm it at once unless it is a multiprocessing child (then: when it trains)."""
    global _ACTIVE
    raw = os.environ.get(ENV)
    if not raw or _ACTIVE is not None:
        return
    argv = list(getattr(sys, "orig_argv", sys.argv))
    child = _mp_child(argv)
    if not child and helper_role(argv, os.environ) is not None:
        return
    settings = msgspec.json.decode(raw, type=AttachSettings)
    _ACTIVE = Attached(settings, launch="multiprocessing" if child else "exec")
    if patches.install(_call):
        os.register_at_fork(after_in_child=_after_fork_in_child)
    if not child:
        _ACTIVE.arm()


def _after_fork_in_child() -> None:
    """A fork of an attached process: a fresh, dormant state (a DataLoader worker, or a rank to be)."""
    global _ACTIVE
    parent = _ACTIVE
    if parent is None:
        return
    _ACTIVE = Attached(parent.settings, launch="fork", kineto_inherited=kineto_used())


def _first_tensor(obj: Any, depth: int = 0) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if depth > 3:
        return None
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    for item in items:
        t = _first_tensor(item, depth + 1)
        if t is not None:
            return t
    return None


def _unwrap(module: nn.Module) -> nn.Module:
    while isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        module = module.module
    return module


class Attached:
    """The profiler, the hooks' state and the report of one attached process."""

    def __init__(self, settings: AttachSettings, launch: str = "exec", kineto_inherited: bool = False) -> None:
        self.settings = settings
        self.run_dir = Path(settings.run_dir)
        self.pid = os.getpid()
        rank = int(os.environ.get("RANK", "0") or 0) if launch == "exec" else 0
        world = int(os.environ.get("WORLD_SIZE", "1") or 1) if launch == "exec" else 1
        self.report = ProcessReport(pid=self.pid, rank=rank, world_size=world,
                                    torchrun=launch == "exec" and "LOCAL_RANK" in os.environ,
                                    torch=torch.__version__, cuda=torch.version.cuda)
        self.kineto_inherited = kineto_inherited
        self.tracer = Tracer(self.run_dir, self.report, self.note)
        self.armed = False
        self.t0 = time.perf_counter()
        self.last_step: float | None = None
        self.t_first_batch: float | None = None
        self.t_first_step: float | None = None
        self.optimizer_ref: weakref.ReferenceType[torch.optim.Optimizer] | None = None
        self.optimizers_seen = 0
        self.opt_label: record_function | None = None
        self.roots: list[weakref.ReferenceType[nn.Module]] = []
        self.trained: nn.Module | None = None
        self.depth = 0
        self.fwd_label: record_function | None = None
        self.train_dataset: int | None = None
        self.example: torch.Tensor | None = None
        self.finished = False
        self.lock = threading.Lock()

    # --- arming: from now on this process is profiled ---------------------------------------
    def arm(self) -> None:
        """From now on this process is profiled: at once when started by exec, else once it trains."""
        if self.armed or self.finished:
            return
        self.armed = True
        self.tracer.cuda = torch.cuda.is_available()
        if self.kineto_inherited:
            self.note("forked from a process that had already run the profiler: Kineto cannot record in a "
                      "forked copy, so this process is reported but not traced (start ranks with the spawn "
                      "start method, e.g. torch.multiprocessing.spawn)")
        self.exit_hooks = ExitHooks(self.finish, self.pid)
        if not self.exit_hooks.install():
            self.note("armed outside the main thread: SIGTERM does not flush the trace")
        self._write()

    def note(self, text: str) -> None:
        if text not in self.report.notes:
            self.report.notes.append(text)

    def _can_record(self) -> bool:
        return self.armed and not self.finished and not self.kineto_inherited

    # --- what the process constructs -----------------------------------------------------------
    def _on_data_parallel(self, module: nn.DataParallel) -> None:
        r = self.report
        r.dp_wrappers += 1
        if not r.dp_device_ids:      # the first wrapper's ids, as given ([0, 0] is 2 replicas on one GPU)
            r.dp_device_ids = [int(i) for i in (module.device_ids or [])]

    def _on_ddp(self) -> None:
        self.report.ddp = True
        self._on_process_group()

    def _on_process_group(self) -> None:
        ranks = dist_rank()
        if ranks is not None:
            self.report.rank, self.report.world_size = ranks
        if self.armed:
            self._write()            # the rank it now knows
        else:
            self.arm()

    def _on_batch(self, it: Any, batch: Any) -> None:
        t = _first_tensor(batch)
        if t is None or t.dim() == 0:
            return
        ds = id(getattr(it, "_dataset", None))
        r = self.report
        if self.train_dataset is None and self.optimizer_ref is None:
            self.train_dataset = ds
            self.t_first_batch = time.perf_counter()
            r.first_batch = int(t.shape[0])
            r.workers = int(getattr(it, "_num_workers", 0))
            r.pin_memory = bool(getattr(it, "_pin_memory", False))
            self.example = t[:1].detach().clone()
        if ds == self.train_dataset:
            r.images += int(t.shape[0])

    # --- forward label on the trained module -------------------------------------------------
    def _root_pre(self, module: nn.Module, global_hook: bool = False) -> None:
        if not self.armed or self.finished:
            return
        if global_hook and self.trained is not None:
            return                   # from the first step on, only the trained module is labelled
        if self.depth == 0:
            if self.tracer.prestep is None and self.optimizer_ref is None and self._can_record():
                self.tracer.start_prestep()
            if not any(ref() is module for ref in self.roots):
                self.roots.append(weakref.ref(module))
            self.fwd_label = record_function(vocab.FORWARD)
            self.fwd_label.__enter__()
        self.depth += 1

    def _root_post(self, _module: nn.Module, global_hook: bool = False) -> None:
        if not self.armed or self.finished or (global_hook and self.trained is not None):
            return
        self.depth = max(0, self.depth - 1)
        if self.depth == 0 and self.fwd_label is not None:
            label, self.fwd_label = self.fwd_label, None
            label.__exit__(None, None, None)

    def _trained_module(self, optimizer: torch.optim.Optimizer) -> nn.Module | None:
        params = {id(p) for g in optimizer.param_groups for p in g["params"]}
        best, best_n = None, 0
        for ref in self.roots:
            mod = ref()
            if mod is None:
                continue
            n = sum(1 for p in mod.parameters() if id(p) in params)
            if n > best_n:
                best, best_n = mod, n
        return best

    def _label_module(self, module: nn.Module) -> None:
        """From the first step on, only the trained module's forward is labelled: the global hooks go
        (every module call would pay for them), in this process and in the workers it forks later."""
        patches.drop_global_hooks()
        self.trained = module
        self.depth = 0
        module.register_forward_pre_hook(lambda m, a: self._root_pre(m))
        module.register_forward_hook(lambda m, a, o: self._root_post(m), always_call=True)

    # --- the optimizer steps the schedule ------------------------------------------------------
    def _ours(self, optimizer: torch.optim.Optimizer) -> bool:
        if self.optimizer_ref is None:
            return True
        return self.optimizer_ref() is optimizer

    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.armed:
            self.arm()
        if self._ours(optimizer) and not self.finished:
            self.opt_label = record_function(vocab.OPTIMIZER)
            self.opt_label.__enter__()

    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.opt_label is not None:
            label, self.opt_label = self.opt_label, None
            label.__exit__(None, None, None)
        if self.finished or not self.armed:
            return
        if not self._ours(optimizer):
            if self.optimizers_seen == 1:
                self.optimizers_seen = 2
                first = self.optimizer_ref() if self.optimizer_ref else None
                self.note(f"several optimizers step; the schedule follows the first ({type(first).__name__})"
                          if first is not None else "several optimizers step")
            return
        now = time.perf_counter()
        r = self.report
        r.optimizer_steps += 1
        if self.last_step is not None:
            r.step_times_ms.append(round((now - self.last_step) * 1e3, 3))
        r.loop_images = r.images
        r.loop_s = now - self.t_first_batch if self.t_first_batch is not None else 0.0
        if self.optimizer_ref is None:
            self._first_step(optimizer)
        else:
            self.tracer.step()
        self.last_step = time.perf_counter()
        if self._stop_due():
            self.finish()

    def _stop_due(self) -> bool:
        """--steps / --duration: this process has done its share; the parent stops the command."""
        s, r = self.settings, self.report
        if s.stop_steps is not None and r.optimizer_steps >= s.stop_steps:
            r.stopped = "steps"
            return True
        if s.duration_s is not None and self.t_first_step is not None \
                and time.perf_counter() - self.t_first_step >= s.duration_s and r.optimizer_steps >= s.steps_needed:
            r.stopped = "duration"
            return True
        return False

    def _first_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer_ref = weakref.ref(optimizer)
        self.optimizers_seen = 1
        self.t_first_step = time.perf_counter()
        self.tracer.stop_prestep(keep=False)
        r = self.report
        r.first_step_ns = time.time_ns()
        r.optimizer = type(optimizer).__name__
        module = self._trained_module(optimizer)
        if module is None:
            first = next((p for g in optimizer.param_groups for p in g["params"]), None)
            r.device_type = first.device.type if first is not None else None
            self.note("no module called forward on the optimizer's parameters: model table unknown")
        else:
            inner = _unwrap(module)
            first = next(inner.parameters(), None)
            r.device_type = first.device.type if first is not None else None
            r.model = self._describe(inner)
            self._label_module(module)
        if not self.kineto_inherited:
            self.tracer.start_scheduled(self.settings, all_threads=r.dp_wrappers > 0)
        self._write()

    def _describe(self, module: nn.Module) -> Any:
        if self.example is None:
            self.note("model table unknown: no tensor batch came from a DataLoader to run one sample through")
            return None
        modes = [(m, m.training) for m in module.modules()]
        first = next(module.parameters(), None)
        example = self.example.to(first.device) if first is not None else self.example
        try:
            module.eval()
            return describe(module, example=example)
        except Exception as exc:
            self.note(f"model table unknown: one sample through the model failed ({type(exc).__name__}: {exc})")
            return None
        finally:
            for m, mode in modes:
                m.training = mode

    # --- the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        """Flush the trace and the report, once (atexit, a finalizer, SIGTERM, or --steps first)."""
        if os.getpid() != self.pid or not self.armed:
            return
        with self.lock:
            if self.finished:
                return
            self.finished = True
        quiet = QuietChildren()
        try:
            self._flush()
        finally:
            quiet.restore()

    def _flush(self) -> None:
        r = self.report
        if self.fwd_label is not None:       # stopped inside a forward (SIGTERM): close its label first
            label, self.fwd_label = self.fwd_label, None
            try:
                label.__exit__(None, None, None)
            except Exception:
                pass
        self.tracer.stop(keep_prestep=r.optimizer_steps == 0)   # no optimizer step ever: the whole run as one step
        r.wall_s = time.perf_counter() - self.t0
        try:
            r.cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
            if self.tracer.cuda and torch.cuda.is_initialized():
                r.cuda_devices = cuda_devices(torch.cuda.device_count())
        except Exception:
            pass
        self._write()

    def _write(self) -> None:
        try:
            write_report(Path(self.settings.state_dir), self.report)
        except OSError as exc:
            print(f"scalescope attach: could not write the process report: {exc}", file=sys.stderr)
