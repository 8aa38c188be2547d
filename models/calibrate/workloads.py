"""What the calibration runs: the run's own model on random CIFAR-shaped images -- forward +
backward alone, its training step (optionally as a DDP rank, with forked DataLoader workers
beside it), and an Adam update written out op for op (the memory-bound pass)."""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.convnet import ConvNet

__all__ = ["model_and_batch", "compute_pass", "memory_pass", "train_step"]


def model_and_batch(width: float, batch: int, channels_last: bool,
                    gen: torch.Generator) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The run's model and one batch of random CIFAR-shaped images, in the run's memory format."""
    model = ConvNet(width=width).train()
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x, torch.randint(0, 10, (batch,), generator=gen)


def _autocast(amp: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def compute_pass(width: float, batch: int, channels_last: bool, amp: bool,
                 gen: torch.Generator) -> tuple[Callable[[], None], int]:
    """Forward + backward of the run's model on random CIFAR-shaped images (as its loop does it:
    grads set to None, the loss under autocast with --amp); and the model's parameter count."""
    model, x, y = model_and_batch(width, batch, channels_last, gen)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with _autocast(amp):
            loss = loss_fn(model(x), y)
        loss.backward()
    return step, sum(p.numel() for p in model.parameters())


def memory_pass(elements: int, gen: torch.Generator, lr: float = 1e-3) -> Callable[[], None]:
    """One Adam update of `elements` float32 values, op for op as torch.optim.Adam does it on CPU
    (its single-tensor path): memory-bound, the optimizer's cost per element at the current threads.
    Written out rather than calling Adam.step, whose first call imports seconds of torch._dynamo."""
    p, g = torch.rand(elements, generator=gen), torch.rand(elements, generator=gen)
    exp_avg, exp_avg_sq = torch.zeros(elements), torch.zeros(elements)
    b1, b2, eps, bc2_sqrt = 0.9, 0.999, 1e-8, math.sqrt(1 - 0.999)

    @torch.no_grad()
    def step() -> None:
        exp_avg.lerp_(g, 1 - b1)
        exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.addcdiv_(exp_avg, (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps), value=-lr / (1 - b1))
    return step


def _batches(x: torch.Tensor, y: torch.Tensor, workers: int, calls: int) -> Any:
    """The step's batch from `workers` forked DataLoader workers, as the run gets it (None: no workers),
    for `calls` steps: the workers end only at the next() after the last batch, so they live through
    every timed step as the run's do.
    A forked worker is not free for the process it copies: on a 2-core VM two DDP ranks' Adam took
    4.2 s with one worker each and 2.4 s without; a loader that ran out after 4 batches (its workers
    gone from the 5th step on) timed the full-width ranks' Adam at 1.1 s where the run's took 1.7-2.2 s."""
    if workers <= 0:
        return None
    from torch.utils.data import DataLoader, TensorDataset
    ds = TensorDataset(x.repeat(calls, *([1] * (x.dim() - 1))), y.repeat(calls))
    return iter(DataLoader(ds, batch_size=len(x), num_workers=workers, multiprocessing_context="fork"))


def train_step(width: float, batch: int, channels_last: bool, amp: bool, lr: float, gen: torch.Generator,
               ddp: bool = False, workers: int = 0, *, calls: int) -> Callable[[], tuple[float, float, float]]:
    """The run's training step as models.loop runs it -- forward + loss, zero_grad(set_to_none) +
    backward, Adam.step -- returning each phase's wall seconds; `ddp` wraps the model in
    DistributedDataParallel first (a gloo group must be up); `calls` is how many times it will be
    called, which the loader's workers outlive."""
    model, x, y = model_and_batch(width, batch, channels_last, gen)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    batches = _batches(x, y, workers, calls)

    def step() -> tuple[float, float, float]:
        nonlocal x, y
        if batches is not None:
            x, y = next(batches)
            if channels_last:        # the loop's h2d phase does the same to every batch
                x = x.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        with _autocast(amp):
            loss = loss_fn(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2
    return step
