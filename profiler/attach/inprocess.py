"""Inside an attached training process: profile it as the runner profiles its own, without its code.

Activated right after `import torch` (see `hook`). From then on:
- a whole-run recording runs until the first optimizer step (so an inference script, which never
  steps, still gets a trace: one step covering the run); at that step it is dropped and the
  scheduled session starts, advanced by every step of the first optimizer
  (`register_optimizer_step_post_hook`). The steps before the first optimizer step count as the
  schedule's first `wait` step.
- the optimizer step, `Tensor.backward` and the trained module's forward carry the contract's labels; so do
  nn.DataParallel's scatter / replicate / parallel_apply / gather, as `LabelledDataParallel` does;
- what the process saw (DDP or DataParallel constructed, the first batch's leading dimension, the
  DataLoader's workers and pin_memory, the optimizer's class, the model table of the module it
  trains) goes to a `ProcessReport` for the parent;
- the trace is flushed on a normal exit, an exception (atexit) and SIGTERM (then the previous
  handler, or the default action, runs as it would have).
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import msgspec
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.profiler import ProfilerAction, ProfilerActivity, record_function, tensorboard_trace_handler

from profiler.attach.command import helper_role
from profiler.attach.report import ENV, AttachSettings, ProcessReport, write_report
from profiler.contract import vocab
from profiler.modeltable import describe
from profiler.session import Schedule, all_threads_config, cuda_devices, make_profiler

__all__ = ["activate", "Attached"]

_ACTIVE: "Attached | None" = None


def activate() -> None:
    """Profile this process if it is a training process of the attached tree (once)."""
    global _ACTIVE
    raw = os.environ.get(ENV)
    if not raw or _ACTIVE is not None:
        return
    if helper_role(list(getattr(sys, "orig_argv", sys.argv)), os.environ) is not None:
        return
    _ACTIVE = Attached(msgspec.json.decode(raw, type=AttachSettings))
    _ACTIVE.install()


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
    """The profiler, the hooks and the report of one attached process."""

    def __init__(self, settings: AttachSettings) -> None:
        self.settings = settings
        self.run_dir = Path(settings.run_dir)
        self.pid = os.getpid()
        rank = int(os.environ.get("RANK", "0") or 0)
        self.worker = f"rank{rank}"
        self.report = ProcessReport(pid=self.pid, rank=rank, world_size=int(os.environ.get("WORLD_SIZE", "1") or 1),
                                    torchrun="LOCAL_RANK" in os.environ, torch=torch.__version__,
                                    cuda=torch.version.cuda)
        self.cuda = torch.cuda.is_available()
        self.t0 = time.perf_counter()
        self.last_step: float | None = None
        self.t_first_batch: float | None = None
        self.optimizer_ref: weakref.ReferenceType[torch.optim.Optimizer] | None = None
        self.optimizers_seen = 0
        self.prestep: torch.profiler.profile | None = None
        self.keep_prestep = True
        self.scheduled: Any = None
        self.opt_label: record_function | None = None
        self.roots: list[weakref.ReferenceType[nn.Module]] = []
        self.depth = 0
        self.fwd_label: record_function | None = None
        self.global_hooks: list[Any] = []
        self.module_hooks: list[Any] = []
        self.train_dataset: int | None = None
        self.example: torch.Tensor | None = None
        self.finished = False
        self.lock = threading.Lock()
        self.prev_term: Any = None

    # --- setup ------------------------------------------------------------------------------
    def install(self) -> None:
        self._patch_data_parallel()
        self._patch_ddp()
        self._patch_dataloader()
        self._patch_backward()
        register_optimizer_step_pre_hook(self._before_step)
        register_optimizer_step_post_hook(self._after_step)
        self.global_hooks = [register_module_forward_pre_hook(self._root_pre),
                             register_module_forward_hook(self._root_post, always_call=True)]
        atexit.register(self.finish)
        if threading.current_thread() is threading.main_thread():
            self.prev_term = signal.signal(signal.SIGTERM, self._on_sigterm)
        else:
            self.note("torch was imported outside the main thread: SIGTERM does not flush the trace")
        self._start_prestep()
        self._write()

    def note(self, text: str) -> None:
        if text not in self.report.notes:
            self.report.notes.append(text)

    def _activities(self) -> list[ProfilerActivity]:
        return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])

    def _start_prestep(self) -> None:
        handler = tensorboard_trace_handler(str(self.run_dir), worker_name=self.worker, use_gzip=True)

        def ready(prof: Any) -> None:
            if self.keep_prestep:
                handler(prof)
        experimental = all_threads_config()[0] if self.cuda else None   # DataParallel's replica threads
        self.prestep = torch.profiler.profile(activities=self._activities(), on_trace_ready=ready,
                                              schedule=lambda _step: ProfilerAction.RECORD,
                                              experimental_config=experimental)
        self.prestep.start()

    def _stop_prestep(self, keep: bool) -> None:
        prof, self.prestep = self.prestep, None
        if prof is None:
            return
        self.keep_prestep = keep
        prof.stop()

    # --- patches: what the process constructs ----------------------------------------------
    def _patch_data_parallel(self) -> None:
        dp = nn.DataParallel
        if getattr(dp, "_ss_attached", False):
            return
        init = dp.__init__
        report = self.report

        def __init__(module: nn.DataParallel, *args: Any, **kwargs: Any) -> None:
            init(module, *args, **kwargs)
            report.dp_wrappers += 1
            if not report.dp_device_ids:      # the first wrapper's ids, as given ([0, 0] is 2 replicas on one GPU)
                report.dp_device_ids = [int(i) for i in (module.device_ids or [])]

        dp.__init__ = __init__    # type: ignore[method-assign]
        for method, label in (("scatter", vocab.SCATTER), ("replicate", vocab.REPLICATE),
                              ("parallel_apply", vocab.PARALLEL_APPLY), ("gather", vocab.GATHER)):
            setattr(dp, method, _labelled(getattr(dp, method), label))
        dp._ss_attached = True    # type: ignore[attr-defined]

    def _patch_ddp(self) -> None:
        ddp = nn.parallel.DistributedDataParallel
        init = ddp.__init__
        report = self.report

        def __init__(module: Any, *args: Any, **kwargs: Any) -> None:
            init(module, *args, **kwargs)
            report.ddp = True
            try:
                import torch.distributed as dist
                if dist.is_initialized():
                    report.world_size = dist.get_world_size()
                    report.rank = dist.get_rank()
            except Exception:
                pass

        ddp.__init__ = __init__   # type: ignore[method-assign]

    def _patch_backward(self) -> None:
        """`loss.backward()` under the backward label: on CPU the autograd engine runs in the calling
        thread, and ops under no label would read as host overhead."""
        real = torch.Tensor.backward
        if getattr(real, "_ss_attached", False):
            return

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            with record_function(vocab.BACKWARD):
                return real(tensor, *args, **kwargs)

        backward._ss_attached = True   # type: ignore[attr-defined]
        backward.__doc__ = real.__doc__
        torch.Tensor.backward = backward   # type: ignore[method-assign]

    def _patch_dataloader(self) -> None:
        from torch.utils.data import dataloader as dl
        base = dl._BaseDataLoaderIter
        nxt = base.__next__
        attached = self

        def __next__(it: Any) -> Any:
            batch = nxt(it)
            attached._on_batch(it, batch)
            return batch

        base.__next__ = __next__  # type: ignore[method-assign]

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
    def _root_pre(self, module: nn.Module, _args: Any) -> None:
        if self.depth == 0:
            if not any(ref() is module for ref in self.roots):
                self.roots.append(weakref.ref(module))
            self.fwd_label = record_function(vocab.FORWARD)
            self.fwd_label.__enter__()
        self.depth += 1

    def _root_post(self, _module: nn.Module, _args: Any, _out: Any) -> None:
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
        """From the first step on, only the trained module's forward is labelled (no global hooks)."""
        for h in self.global_hooks:
            h.remove()
        self.global_hooks = []
        self.depth = 0
        self.module_hooks = [module.register_forward_pre_hook(self._root_pre),
                             module.register_forward_hook(self._root_post, always_call=True)]

    # --- the optimizer steps the schedule ------------------------------------------------------
    def _ours(self, optimizer: torch.optim.Optimizer) -> bool:
        if self.optimizer_ref is None:
            return True
        return self.optimizer_ref() is optimizer

    def _before_step(self, optimizer: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        if self._ours(optimizer) and not self.finished:
            self.opt_label = record_function(vocab.OPTIMIZER)
            self.opt_label.__enter__()

    def _after_step(self, optimizer: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        if self.opt_label is not None:
            label, self.opt_label = self.opt_label, None
            label.__exit__(None, None, None)
        if self.finished:
            return
        if not self._ours(optimizer):
            if self.optimizers_seen == 1:
                self.optimizers_seen = 2
                self.note(f"several optimizers step; the schedule follows the first ({type(self.optimizer_ref()).__name__})"
                          if self.optimizer_ref and self.optimizer_ref() else "several optimizers step")
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
            self._sync_if_recording()
            self.scheduled.step()
        self.last_step = time.perf_counter()

    def _first_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer_ref = weakref.ref(optimizer)
        self.optimizers_seen = 1
        self._stop_prestep(keep=False)
        r = self.report
        r.optimizer = type(optimizer).__name__
        module = self._trained_module(optimizer)
        if module is None:
            self.note("no module called forward on the optimizer's parameters: model table and device unknown")
        else:
            inner = _unwrap(module)
            first = next(inner.parameters(), None)
            r.device_type = first.device.type if first is not None else None
            r.model = self._describe(inner)
            self._label_module(module)
        s = self.settings
        self.scheduled = make_profiler(self.run_dir, self.worker,
                                       Schedule(wait=max(s.wait - 1, 0), warmup=s.warmup, active=s.active,
                                                repeat=s.repeat),
                                       self.cuda, all_threads=r.dp_wrappers > 0, notes=r.notes)
        self.scheduled.start()
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

    def _sync_if_recording(self) -> None:
        """The step's kernels end inside its window, as the runner ensures -- only while recording."""
        if not self.cuda or getattr(self.scheduled, "current_action", ProfilerAction.NONE) == ProfilerAction.NONE:
            return
        ids = sorted(set(self.report.dp_device_ids)) or ([torch.cuda.current_device()] if torch.cuda.is_initialized() else [])
        for i in ids:
            torch.cuda.synchronize(i)

    # --- the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        """Flush the trace and the report, once (atexit, or SIGTERM first)."""
        if os.getpid() != self.pid:          # a forked DataLoader worker inherited this object
            return
        with self.lock:
            if self.finished:
                return
            self.finished = True
        r = self.report
        if self.prestep is not None:         # no optimizer step ever: keep the whole run as one step
            self._stop_prestep(keep=True)
        if self.scheduled is not None:
            try:
                self.scheduled.stop()
            except Exception as exc:
                self.note(f"the profiler did not stop cleanly: {type(exc).__name__}: {exc}")
        r.wall_s = time.perf_counter() - self.t0
        try:
            r.cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
            if self.cuda and torch.cuda.is_initialized():
                r.cuda_devices = cuda_devices(torch.cuda.device_count())
        except Exception:
            pass
        self._write()

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.finish()
        prev = self.prev_term
        if callable(prev):
            prev(signum, frame)
            return
        if prev == signal.SIG_IGN:
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _write(self) -> None:
        try:
            write_report(Path(self.settings.state_dir), self.report)
        except OSError as exc:
            print(f"scalescope attach: could not write the process report: {exc}", file=sys.stderr)


def _labelled(fn: Any, label: str) -> Any:
    """nn.DataParallel's own method under the contract's label (LabelledDataParallel labels itself)."""
    def method(self: nn.DataParallel, *args: Any, **kwargs: Any) -> Any:
        if getattr(type(self), "_ss_labels", False):
            return fn(self, *args, **kwargs)
        with record_function(label):
            return fn(self, *args, **kwargs)
    method.__name__ = getattr(fn, "__name__", label)
    method.__doc__ = getattr(fn, "__doc__", None)
    return method
