"""The training loop of one process (the only process, or one DDP rank), fully labelled.

Every step is data_wait → h2d → forward → loss → backward → optimizer under the vocab
labels, then (on CUDA, every device the process drives synchronized) prof.step(). The optimizer is created once and evaluation restores train()
(the seed got both wrong). A signal only sets a flag; the loop stops at the next step
boundary so the profiler can flush what it collected.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from models.config import RunConfig
from models.convnet import ConvNet
from models.data import build_datasets
from models.strategies import Placement, wrap
from profiler.contract import vocab
from profiler.contract.runjson import EpochResult, Results
from profiler.session import Schedule, make_profiler, phase, synchronize_devices


class StopFlag:
    """Set by SIGTERM/SIGINT; read at step boundaries. `signum` is 0 until a signal arrives.

    The same signal a second time (Ctrl-C twice) raises KeyboardInterrupt: stop now. A forwarded
    copy arrives as SIGTERM, so a terminal Ctrl-C reaching a process both directly (SIGINT) and
    through its parent (SIGTERM) still counts as one request.
    """

    def __init__(self) -> None:
        self.signum = 0
        self.seen: set[int] = set()
        self.force_ok = True     # False while the trace is being flushed: never cut that short

    def install(self, on_signal: Callable[[int], None] | None = None) -> "StopFlag":
        def handle(signum: int, _frame: Any) -> None:
            if signum in self.seen and self.force_ok:
                raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
            self.seen.add(signum)
            self.signum = self.signum or signum
            if on_signal is not None:
                on_signal(signum)
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        return self

    def __bool__(self) -> bool:
        return self.signum != 0


@dataclass
class LoopOutcome:
    """What one training process returns: run.json "results", and what only the runner needs."""

    results: Results
    interrupted: int = 0                  # the signal the loop stopped for (0: it ran to the end)
    notes: list[str] = field(default_factory=list)


class DeliberateFailure(RuntimeError):
    """--fail-at-step: the failed path, on purpose."""


def _quiet_worker(_worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which stops cleanly and
    shuts them down (a Ctrl-C to the process group would otherwise kill them mid-batch)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(ds: Dataset, cfg: RunConfig, batch: int, rank: int, world: int, train: bool,
                cuda: bool) -> DataLoader:
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=train, seed=cfg.seed) \
        if cfg.strategy == vocab.DDP else None
    return DataLoader(ds, batch_size=batch, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=cfg.workers, pin_memory=cfg.pin_memory and cuda,
                      worker_init_fn=_quiet_worker if cfg.workers else None,
                      persistent_workers=cfg.workers > 0 and cfg.epochs > 1,
                      generator=torch.Generator().manual_seed(cfg.seed + rank),
                      multiprocessing_context=_worker_context(cfg.workers))


def _worker_context(workers: int) -> str | None:
    """fork where it exists: a spawned DDP rank would otherwise spawn its workers too, and each
    re-imports torch (seconds per worker per epoch); workers never touch CUDA, so fork is safe."""
    import multiprocessing
    return "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None


def _amp_context(cfg: RunConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if not cfg.amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == vocab.CUDA else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, cfg: RunConfig,
             world: int) -> float:
    """Test accuracy (all ranks, summed); always leaves the model in train() mode."""
    model.eval()
    correct = torch.zeros(2, dtype=torch.float64, device=device)
    try:
        with torch.no_grad():
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with _amp_context(cfg, device):
                    pred = model(x).argmax(1)
                correct[0] += (pred == y).sum()
                correct[1] += y.numel()
        if world > 1:
            dist.all_reduce(correct)
    finally:
        model.train()
    return float(correct[0] / correct[1]) if correct[1] > 0 else 0.0


@dataclass
class _Tally:
    """What the loop counts as it goes: run.json "results" and the stop it ends with."""

    step: int = 0
    images: int = 0
    step_times: list[float] = field(default_factory=list)     # ms
    epochs: list[EpochResult] = field(default_factory=list)
    final_loss: float | None = None
    accuracy: float | None = None
    interrupted: int = 0
    agreed: int = 0   # DDP: the stop all ranks agreed on at the last step end (a local flag alone would desync them)

    def results(self, wall: float) -> Results:
        return Results(steps=self.step, images=self.images, wall_s=wall,
                       images_per_s=self.images / wall if wall > 0 else 0.0, epochs=self.epochs,
                       step_times_ms=[round(t, 3) for t in self.step_times], final_loss=self.final_loss,
                       accuracy=self.accuracy)


@dataclass
class _Trainer:
    """One process's training: what it trains with, where it reports, and its tally."""

    cfg: RunConfig
    placement: Placement
    world: int
    stop: StopFlag
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    scaler: torch.amp.GradScaler | None
    loader: DataLoader
    test_loader: DataLoader | None
    steps_per_epoch: int
    planned: int
    writer: Any
    bar: Any
    prof: Any = None
    sync_before_step: bool = False
    tally: _Tally = field(default_factory=_Tally)

    def should_stop(self) -> int:
        return self.tally.agreed if self.world > 1 else self.stop.signum

    def run(self) -> None:
        """Every epoch under the profiler, until the plan or a stop ends them."""
        with self.prof:
            for epoch in range(self.cfg.epochs):
                if self.tally.step >= self.planned or self.tally.interrupted:
                    break
                self._epoch(epoch)
            self.stop.force_ok = False     # leaving the profiler context writes the trace

    def _epoch(self, epoch: int) -> None:
        """One epoch's steps, then its record (and evaluation with --eval)."""
        t = self.tally
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(epoch)
        e_start = time.perf_counter()
        e_steps, e_images = self._steps()
        e_wall = time.perf_counter() - e_start
        rec = EpochResult(epoch=epoch, steps=e_steps, images=e_images, wall_s=e_wall,
                          images_per_s=e_images / e_wall if e_wall > 0 else 0.0)
        if self.test_loader is not None and not self.should_stop() and e_steps:
            t.accuracy = evaluate(self.model, self.test_loader, self.placement.device, self.cfg, self.world)
            rec.accuracy = t.accuracy
            if self.writer is not None:
                self.writer.add_scalar("eval/accuracy", t.accuracy, t.step)
        t.epochs.append(rec)
        if self.should_stop():
            t.interrupted = self.should_stop()

    def _steps(self) -> tuple[int, int]:
        """The epoch's steps (its iterator ends with it); returns its steps and images."""
        t, cfg, device = self.tally, self.cfg, self.placement.device
        e_steps, e_images = 0, 0
        it: Iterator[Any] = iter(self.loader)
        for _ in range(self.steps_per_epoch):
            if t.step >= self.planned:
                break
            if self.should_stop():
                t.interrupted = self.should_stop()
                break
            if cfg.fail_at_step is not None and t.step == cfg.fail_at_step:
                raise DeliberateFailure(f"--fail-at-step {t.step}: deliberate failure for testing")
            t0 = time.perf_counter()
            try:
                with phase(vocab.DATA_WAIT):
                    x, y = next(it)
            except Exception:
                if self.stop:          # workers killed by the same signal: an interrupt, not a failure
                    t.interrupted = self.stop.signum
                    break
                raise
            loss = _step(self.model, self.optimizer, self.loss_fn, self.scaler, x, y, cfg, device)
            loss_val, peer_stop = _step_end(loss, self.stop, self.world, device)
            if self.sync_before_step:      # the step's kernels on every GPU end inside its window
                synchronize_devices(device, self.placement.device_ids)
            self.prof.step()
            dt = time.perf_counter() - t0
            n_img = int(x.size(0)) * self.world
            e_steps += 1
            e_images += n_img
            self._count(loss_val, n_img, dt)
            if peer_stop:
                t.agreed = self.stop.signum or peer_stop
        return e_steps, e_images

    def _count(self, loss_val: float, n_img: int, dt: float) -> None:
        """A finished step into the tally, TensorBoard and the progress bar."""
        t = self.tally
        t.step += 1
        t.images += n_img
        t.step_times.append(dt * 1e3)
        t.final_loss = loss_val
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss_val, t.step)
            self.writer.add_scalar("train/images_per_s", n_img / dt if dt > 0 else 0.0, t.step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss_val:.3f}", img_s=f"{n_img / dt:.0f}" if dt > 0 else "-")
            self.bar.update(1)


def _schedule(cfg: RunConfig, planned: int, notes: list[str]) -> Schedule:
    """The run's profiler schedule; a note when the run is too short for all of it."""
    p = cfg.profiler
    sched = Schedule(wait=p["wait"], warmup=p["warmup"], active=p["active"], repeat=p["repeat"])
    if p["enabled"] and 0 < planned < sched.steps_needed:
        notes.append(f"only {planned} steps but the profiler schedule needs {sched.steps_needed} "
                     f"((wait {p['wait']} + warmup {p['warmup']} + active {p['active']}) x repeat "
                     f"{p['repeat']}): the trace has fewer active steps or none")
    return sched


def _planned_steps(cfg: RunConfig, steps_per_epoch: int) -> int:
    planned = cfg.epochs * steps_per_epoch
    return min(planned, cfg.max_steps) if cfg.max_steps is not None else planned


def train_process(cfg: RunConfig, placement: Placement, rank: int, world: int,
                  stop: StopFlag) -> LoopOutcome:
    """Build data, model and optimizer, train with the profiler; return run.json "results",
    the signal it stopped for and its notes."""
    device = placement.device
    cuda = device.type == vocab.CUDA
    torch.manual_seed(cfg.seed)
    notes: list[str] = []
    train_set, test_set = build_datasets(cfg.data, cfg.data_dir, False, cfg.train_size, cfg.seed)
    batch = cfg.per_device_batch if cfg.strategy == vocab.DDP else cfg.global_batch
    loader = make_loader(train_set, cfg, batch, rank, world, True, cuda)
    test_loader = make_loader(test_set, cfg, batch, rank, world, False, cuda) if cfg.eval else None

    model: nn.Module = ConvNet(width=cfg.width)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = wrap(model, cfg.strategy, placement, rank)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)   # once, not per epoch
    loss_fn = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and cuda else None

    steps_per_epoch = len(loader)
    planned = _planned_steps(cfg, steps_per_epoch)
    sched = _schedule(cfg, planned, notes)
    trainer = _Trainer(cfg, placement, world, stop, model, optimizer, loss_fn, scaler, loader, test_loader,
                       steps_per_epoch, planned, writer=_summary_writer(cfg, rank), bar=_progress(cfg, planned, rank))

    t_start = time.perf_counter()
    enabled = cfg.profiler["enabled"]
    trainer.prof = make_profiler(cfg.run_dir, f"rank{rank}", sched, cuda, enabled=enabled,
                                 all_threads=cfg.strategy in vocab.DP_STRATEGIES, notes=notes)
    trainer.sync_before_step = cuda and enabled
    try:
        trainer.run()
    finally:
        if trainer.bar is not None:
            trainer.bar.close()
        if trainer.writer is not None:
            trainer.writer.close()
    wall = time.perf_counter() - t_start
    return LoopOutcome(trainer.tally.results(wall), trainer.tally.interrupted, notes)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
          scaler: torch.amp.GradScaler | None, x: torch.Tensor, y: torch.Tensor, cfg: RunConfig,
          device: torch.device) -> torch.Tensor:
    """h2d → forward → loss → backward → optimizer, each under its vocab label; returns the loss."""
    with phase(vocab.H2D):
        x = x.to(device, non_blocking=cfg.pin_memory)
        y = y.to(device, non_blocking=cfg.pin_memory)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    with _amp_context(cfg, device):
        with phase(vocab.FORWARD):
            out = model(x)
        with phase(vocab.LOSS):
            loss = loss_fn(out, y)
    with phase(vocab.BACKWARD):
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
    with phase(vocab.OPTIMIZER):
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    return loss


def _step_end(loss: torch.Tensor, stop: StopFlag, world: int, device: torch.device) -> tuple[float, int]:
    """The step's loss (mean over ranks) and, under DDP, whether any rank was asked to stop:
    ranks must agree on the step they stop after or the others hang in the next all-reduce."""
    if world == 1:
        return float(loss.detach()), 0
    t = torch.stack([loss.detach().float(), torch.tensor(float(stop.signum), device=device)])
    dist.all_reduce(t)
    mean_loss, flag = t.tolist()
    return mean_loss / world, (signal.SIGTERM if flag > 0 else 0)


def _summary_writer(cfg: RunConfig, rank: int) -> Any:
    if rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(cfg.run_dir), filename_suffix=".train")


def _progress(cfg: RunConfig, total: int, rank: int) -> Any:
    if rank != 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=cfg.name, unit="step", file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0)
