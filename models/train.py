"""`python -m models.train`: one profiled training run → <out>/<run>/ (see --help).

The process that runs this owns the run folder: it validates input (exit 2, nothing written),
writes run.json at start and end, runs the NVML/host sampler for the whole run (its children
-- torchrun and its DDP ranks, DataLoader workers -- are sampled as its process tree), and turns signals into
status "interrupted". The GPUs are named by the UUID the driver reports for each CUDA index,
and that mapping is what the sampler opens NVML by. Training itself happens here (single, dp, dp-layerwise) or in
ranks started by torchrun (ddp, models.ddp).
"""
from __future__ import annotations

import os
import signal
import sys
import traceback

import torch

from models.config import RunConfig, UsageError, build_parser, make_config
from models.convnet import ConvNet, describe
from models.data import DataError, build_datasets
from models.loop import LoopOutcome, StopFlag, train_process
from models.strategies import Placement, StrategyError, check, parse_device_ids, resolve_device_type
from profiler.contract import vocab
from profiler.contract.runfiles import clear_run_files
from profiler.contract.runjson import ModelInfo, Results
from profiler.runinfo import RunRecord, collect_environment
from profiler.sampler import Sampler, SamplerConfig
from profiler.session import cuda_devices
from profiler.scalars import samples_to_scalars


def prepare(argv: list[str] | None) -> RunConfig:
    """Parse and validate everything that can be checked before a folder exists."""
    args = build_parser().parse_args(argv)
    device_type = resolve_device_type(args.device)
    ids = check(args.strategy, device_type, args.gpus, parse_device_ids(args.device_ids))
    cfg = make_config(args, device_type, ids, ["models.train", *(sys.argv[1:] if argv is None else argv)])
    if cfg.data == "cifar10":   # fail (or download) here, once, not in every rank
        build_datasets(cfg.data, cfg.data_dir, cfg.download, cfg.train_size, cfg.seed)
    return cfg


def model_description(width: float) -> ModelInfo:
    """run.json "model" (the exact layer table) without allocating the weights (meta device)."""
    with torch.device("meta"):
        return describe(ConvNet(width=width))


def placement_for(cfg: RunConfig) -> Placement:
    if cfg.device_type == vocab.CUDA:
        first = cfg.device_ids[0] if cfg.device_ids else 0
        return Placement(torch.device("cuda", first), cfg.device_ids)
    return Placement(torch.device("cpu"))


def execute(cfg: RunConfig) -> int:
    """Run with the folder, sampler and run.json around it; return the exit code."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if cfg.overwrite:
        left = clear_run_files(cfg.run_dir)
        if left:
            notes.append(f"--overwrite kept files this run did not write: {', '.join(left[:10])}")
    stop = StopFlag().install()
    n_gpus = torch.cuda.device_count() if cfg.device_type == vocab.CUDA else 0
    devices = cuda_devices(n_gpus)
    uuids = tuple(d.uuid for d in devices if d.uuid)
    sampler = Sampler(SamplerConfig(
        csv_path=str(cfg.run_dir / vocab.SAMPLES_CSV), period_s=cfg.sample_period_s, n_gpus=n_gpus,
        gpu_uuids=uuids if len(uuids) == n_gpus and n_gpus else None, root_pid=os.getpid()))
    record = RunRecord(cfg.run_dir, cfg.name, cfg.as_record())
    if cfg.strategy == vocab.DDP and cfg.device_type == vocab.CPU:
        from models.ddp import threads_per_rank
        os.environ["OMP_NUM_THREADS"] = str(threads_per_rank(cfg.devices))   # what the ranks get
    status, message, code = vocab.STATUS_COMPLETE, None, 0
    results: Results | None = None
    try:
        record.start(collect_environment(n_gpus, devices), model_description(cfg.width))
        _calibrate(cfg, record, stop)
        sampler.start()
        outcome: LoopOutcome
        if cfg.strategy == vocab.DDP:
            from models.ddp import run_ddp
            outcome = run_ddp(cfg, stop)
        else:
            outcome = train_process(cfg, placement_for(cfg), 0, 1, stop)
        results = outcome.results
        signum = outcome.interrupted or stop.signum
        notes.extend(outcome.notes)
        if signum:
            status, code = vocab.STATUS_INTERRUPTED, 128 + signum
            message = f"stopped by {signal.Signals(signum).name} after {results.steps} steps"
    except KeyboardInterrupt as exc:  # the same signal twice: stop now (the profiler context still flushed)
        status, code = vocab.STATUS_INTERRUPTED, 128 + (stop.signum or signal.SIGINT)
        message = f"stopped at once by a repeated signal ({exc or 'KeyboardInterrupt'})"
    except Exception as exc:  # the run failed: keep what there is, say why
        status, code = vocab.STATUS_FAILED, 1
        message = str(exc) if hasattr(exc, "detail") else f"{type(exc).__name__}: {exc}"   # RankFailure names its rank
        if stop.signum:          # e.g. a rank killed by the same signal
            status, code = vocab.STATUS_INTERRUPTED, 128 + stop.signum
        detail = getattr(exc, "detail", "") or traceback.format_exc()
        if cfg.debug:
            print(detail, file=sys.stderr)
        print(f"error: run {status}: {message} (details: run.json; --debug for the traceback)",
              file=sys.stderr)
    finally:
        sampler.stop()
    notes.extend(sampler.notes)
    _samples_scalars(cfg, notes)
    record.finish(status, message, results, notes)
    if results is not None:
        print(f"total {cfg.strategy} epochs time = {results.wall_s:.2f}")
        print(f"images/s = {results.images_per_s or 0.0:.1f} ({results.images} images, {results.steps} steps)")
    print(f"run {status}: {cfg.run_dir}")
    return code


def _calibrate(cfg: RunConfig, record: RunRecord, stop: StopFlag) -> None:
    """run.json calibration for the what-if, measured before the sampler starts (so samples.csv
    and the trace hold training alone); written at once, so a run that fails later still has it."""
    from models.calibrate import calibration_for
    record.info.calibration = calibration_for(cfg.device_type, cfg.width, cfg.per_device_batch, cfg.channels_last,
                                              cfg.amp, cfg.lr, enabled=cfg.calibrate,
                                              processes=cfg.devices if cfg.strategy == vocab.DDP else 1,
                                              profiled=bool(cfg.profiler.get("enabled", True)), workers=cfg.workers,
                                              should_stop=lambda: bool(stop), schedule=cfg.profiler)
    if record.info.calibration is not None:
        record.write()


def _samples_scalars(cfg: RunConfig, notes: list[str]) -> None:
    """NVML/host series from samples.csv into TensorBoard; never fails the run."""
    try:
        from torch.utils.tensorboard import SummaryWriter
        with SummaryWriter(log_dir=str(cfg.run_dir), filename_suffix=".samples") as writer:
            samples_to_scalars(cfg.run_dir / vocab.SAMPLES_CSV, writer)
    except Exception as exc:
        notes.append(f"samples.csv -> TensorBoard scalars failed: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = prepare(argv)
    except (UsageError, StrategyError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return execute(cfg)


if __name__ == "__main__":
    sys.exit(main())
