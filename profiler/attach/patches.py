"""What an attached process patches in torch, once per address space: each patch reports what the
process constructed or did (a DataParallel, a DDP, a process group, an optimizer, a batch, a step, a
forward) through one dispatcher, to whichever process state is current -- a fork gets a fresh state,
never a second set of patches. DataParallel's methods and `Tensor.backward` carry the contract's labels.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.profiler import record_function

from ..contract import vocab

__all__ = ["install", "drop_global_hooks"]

Dispatch = Callable[..., None]          # dispatch(method name, *what it saw)

_INSTALLED = False
_GLOBAL_HOOKS: list[Any] = []   # every module's forward, until a process knows which module it trains


def install(call: Dispatch) -> bool:
    """Patch torch (once); False when it was patched already."""
    global _INSTALLED
    if _INSTALLED:
        return False
    _INSTALLED = True
    _patch_data_parallel(call)
    _patch_ddp(call)
    _patch_process_group(call)
    _patch_optimizer_init(call)
    _patch_dataloader(call)
    _patch_backward()
    register_optimizer_step_pre_hook(lambda o, a, k: call("_before_step", o))
    register_optimizer_step_post_hook(lambda o, a, k: call("_after_step", o))
    _GLOBAL_HOOKS[:] = [register_module_forward_pre_hook(lambda m, a: call("_root_pre", m, True)),
                        register_module_forward_hook(lambda m, a, o: call("_root_post", m, True), always_call=True)]
    return True


def drop_global_hooks() -> None:
    """The trained module is known: every module call stops paying for the global hooks (in this process
    and in the workers it forks later)."""
    for handle in _GLOBAL_HOOKS:
        handle.remove()
    _GLOBAL_HOOKS.clear()


def _patch_data_parallel(call: Dispatch) -> None:
    dp = nn.DataParallel
    init = dp.__init__

    def __init__(module: nn.DataParallel, *args: Any, **kwargs: Any) -> None:
        init(module, *args, **kwargs)
        call("_on_data_parallel", module)

    dp.__init__ = __init__    # type: ignore[method-assign]
    for method, label in vocab.DP_METHOD_LABELS:
        setattr(dp, method, _labelled(getattr(dp, method), label))


def _patch_ddp(call: Dispatch) -> None:
    ddp = nn.parallel.DistributedDataParallel
    init = ddp.__init__

    def __init__(module: Any, *args: Any, **kwargs: Any) -> None:
        init(module, *args, **kwargs)
        call("_on_ddp")

    ddp.__init__ = __init__   # type: ignore[method-assign]


def _patch_process_group(call: Dispatch) -> None:
    """`init_process_group` marks a rank, whoever started it (torchrun, mp.spawn, a Process)."""
    try:
        import torch.distributed as dist
        from torch.distributed import distributed_c10d as c10d
    except Exception:
        return
    real = getattr(c10d, "init_process_group", None)
    if real is None:
        return

    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        call("_on_process_group")
        return out

    init_process_group.__doc__ = real.__doc__
    init_process_group.__wrapped__ = real          # type: ignore[attr-defined]
    c10d.init_process_group = init_process_group   # type: ignore[assignment]
    dist.init_process_group = init_process_group   # type: ignore[assignment]


def _patch_optimizer_init(call: Dispatch) -> None:
    base = torch.optim.Optimizer
    init = base.__init__

    def __init__(opt: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        init(opt, *args, **kwargs)
        call("arm")

    __init__.__doc__ = init.__doc__
    base.__init__ = __init__  # type: ignore[method-assign]


def _patch_backward() -> None:
    """`loss.backward()` under the backward label: on CPU the autograd engine runs in the calling
    thread, and ops under no label would read as host overhead."""
    real = torch.Tensor.backward

    def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with record_function(vocab.BACKWARD):
            return real(tensor, *args, **kwargs)

    backward.__doc__ = real.__doc__
    torch.Tensor.backward = backward   # type: ignore[method-assign]


def _patch_dataloader(call: Dispatch) -> None:
    from torch.utils.data import dataloader as dl
    base = dl._BaseDataLoaderIter
    nxt = base.__next__

    def __next__(it: Any) -> Any:
        batch = nxt(it)
        call("_on_batch", it, batch)
        return batch

    base.__next__ = __next__  # type: ignore[method-assign]


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
