"""The exact layer table of a model (run.json "model"): measured by hooks on one sample, never derived.

The runner describes its own ConvNet on the meta device; `profiler.attach` describes whatever
module a user's optimizer trains, on one real sample of its first batch. Both write this one table.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .contract.runjson import Layer, ModelInfo

__all__ = ["describe"]


def describe(model: nn.Module, sample_shape: Sequence[int] = (3, 32, 32),
             example: torch.Tensor | None = None) -> ModelInfo:
    """run.json "model": parameters, and per conv/linear layer the shapes and FLOPs of one sample
    (`example`: a real batch whose first sample is run, for models whose input is not a float image).

    Measured, not derived: forward hooks record each layer's input/output shape on one batch-1
    forward, and `FlopCounterMode` counts its FLOPs (the difference of the running total around
    the layer, so names never have to match). Build the model on the meta device and this costs
    no memory and well under a second; the cost model reads the bytes DP moves from these shapes.
    """
    from torch.utils.flop_counter import FlopCounterMode

    params = list(model.parameters())
    first = params[0] if params else torch.empty(0)
    counter = FlopCounterMode(display=False)
    seen: dict[str, tuple[list[int], list[int], int, int]] = {}
    starts: dict[str, int] = {}
    hooks = []

    def before(name: str) -> object:
        def hook(_mod: nn.Module, _inputs: object) -> None:
            starts[name] = counter.get_total_flops()
        return hook

    def after(name: str) -> object:
        def hook(_mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            seen[name] = (list(x.shape[1:]), list(output.shape[1:]),
                          counter.get_total_flops() - starts[name], output.element_size())
        return hook

    layers_mods = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for name, mod in layers_mods:
        hooks.append(mod.register_forward_pre_hook(before(name)))
        hooks.append(mod.register_forward_hook(after(name)))
    try:
        with torch.no_grad(), counter:
            model(example[:1] if example is not None else
                  torch.empty(1, *sample_shape, device=first.device, dtype=first.dtype))
    finally:
        for h in hooks:
            h.remove()
    layers = []
    for name, mod in layers_mods:
        if name not in seen:           # a layer the forward never reached has no measured shape
            continue
        in_shape, out_shape, flops, dtype_bytes = seen[name]
        layers.append(Layer(name=name, type=type(mod).__name__,
                            parameters=sum(p.numel() for p in mod.parameters(recurse=False)),
                            input_shape=in_shape, output_shape=out_shape, flops=int(flops),
                            dtype_bytes=int(dtype_bytes)))
    return ModelInfo(parameters=sum(p.numel() for p in params),
                     parameter_bytes=sum(p.numel() * p.element_size() for p in params),
                     layers=layers, forward_flops=int(counter.get_total_flops()))

