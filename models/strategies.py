"""How the model is spread over devices: single, dp, dp-layerwise, ddp.

DataParallel strategies use `LabelledDataParallel`, which names its four internal phases
with `record_function` so a trace shows where DP spends each step. DDP runs one process per
device (see models.ddp); this module only wraps the model for a rank.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import record_function

from profiler.contract import vocab

STRATEGIES = vocab.STRATEGIES
DP_STRATEGIES = vocab.DP_STRATEGIES


class StrategyError(Exception):
    """A strategy/device combination that cannot run here (one line, exit 2)."""


class LabelledDataParallel(nn.DataParallel):
    """nn.DataParallel whose scatter / replicate / parallel_apply / gather carry vocab labels
    (vocab.DP_METHOD_LABELS: each method below runs nn.DataParallel's under its label)."""

    _ss_labels = True    # profiler.attach labels nn.DataParallel itself, and leaves these alone


def _labelled_method(method: str, label: str) -> Any:
    def labelled(self: LabelledDataParallel, *args: Any, **kwargs: Any) -> Any:
        with record_function(label):
            return getattr(super(LabelledDataParallel, self), method)(*args, **kwargs)
    labelled.__name__, labelled.__qualname__ = method, f"LabelledDataParallel.{method}"
    labelled.__doc__ = f"nn.DataParallel.{method} under the {label!r} label."
    return labelled


for _method, _label in vocab.DP_METHOD_LABELS:
    setattr(LabelledDataParallel, _method, _labelled_method(_method, _label))
del _method, _label


def wrap_layerwise(model: nn.Module, device_ids: Sequence[int]) -> nn.Module:
    """Wrap every Conv2d/Linear in its own LabelledDataParallel, in place (the seed's four/)."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            setattr(model, name, LabelledDataParallel(child, device_ids=list(device_ids)))
        else:
            wrap_layerwise(child, device_ids)
    return model


@dataclass(frozen=True)
class Placement:
    """Where one process runs: its torch device and, for DP, the CUDA ids it spreads over."""

    device: torch.device
    device_ids: tuple[int, ...] = ()


def parse_device_ids(text: str | None) -> tuple[int, ...] | None:
    if text is None or text == "":
        return None
    try:
        ids = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise StrategyError(f"--device-ids must be comma-separated integers like 0,1 (got {text!r})") from None
    if any(i < 0 for i in ids):
        raise StrategyError(f"--device-ids must be >= 0 (got {text!r})")
    return ids


def resolve_device_type(device: str) -> str:
    """--device auto|cuda|cpu -> "cuda" or "cpu"."""
    if device == "auto":
        return vocab.CUDA if torch.cuda.is_available() else vocab.CPU
    if device == vocab.CUDA and not torch.cuda.is_available():
        raise StrategyError("--device cuda but no CUDA GPU is visible; run with --device cpu "
                            "(on CPU use --strategy single or ddp)")
    return device


def check(strategy: str, device_type: str, n: int, device_ids: tuple[int, ...] | None) -> tuple[int, ...]:
    """Validate before anything is written; return the DP device ids ("" for other strategies)."""
    if strategy not in STRATEGIES:
        raise StrategyError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if n < 1:
        raise StrategyError(f"--gpus must be >= 1 (got {n})")
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if strategy in DP_STRATEGIES:
        hint = (f"on CPU run: python -m models.train --strategy ddp --device cpu --gpus {n}"
                if found == 0 else
                f"run --gpus {found}, or --device-ids {','.join(['0'] * n)} to exercise DP on one GPU")
        if device_type != vocab.CUDA or found == 0:
            raise StrategyError(f"{strategy} needs {n} CUDA GPUs, found {found}; {hint}")
        if device_ids is None:
            if found < n:
                raise StrategyError(f"{strategy} needs {n} CUDA GPUs, found {found}; {hint}")
            return tuple(range(n))
        if len(device_ids) != n:
            raise StrategyError(f"--device-ids lists {len(device_ids)} ids but --gpus is {n}")
        bad = [i for i in device_ids if i >= found]
        if bad:
            raise StrategyError(f"--device-ids {bad} do not exist: found {found} CUDA GPUs")
        return device_ids
    if device_ids is not None:
        raise StrategyError("--device-ids is only for --strategy dp / dp-layerwise")
    if strategy == vocab.SINGLE and n != 1:
        raise StrategyError(f"single uses one device, got --gpus {n}; use --strategy ddp for {n} devices")
    if device_type == vocab.CUDA and found < n:
        raise StrategyError(f"{strategy} needs {n} CUDA GPUs, found {found}; "
                            f"run --gpus {found}" + (" or --device cpu" if strategy == vocab.DDP else ""))
    if device_type == vocab.CPU and strategy == vocab.DDP and n > 64:
        raise StrategyError(f"--gpus {n} CPU processes is too many for one machine")
    return ()


def wrap(model: nn.Module, strategy: str, placement: Placement, rank: int = 0) -> nn.Module:
    """Move the model to its device and wrap it for the strategy (DDP needs an initialised group)."""
    model = model.to(placement.device)
    if strategy == vocab.DP:
        return LabelledDataParallel(model, device_ids=list(placement.device_ids))
    if strategy == vocab.DP_LAYERWISE:
        return wrap_layerwise(model, placement.device_ids)
    if strategy == vocab.DDP:
        from torch.nn.parallel import DistributedDataParallel as DDP
        if placement.device.type == vocab.CUDA:
            return DDP(model, device_ids=[placement.device.index], output_device=placement.device.index)
        return DDP(model)
    return model
