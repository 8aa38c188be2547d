"""The seed's CIFAR-10 ConvNet (CHTC multi-GPU example), layer for layer.

Default width = the seed model, 140,902,954 parameters. `width` scales channels and the
hidden fc widths so tests can run a tiny copy of the same graph; never use it to claim
anything about the seed's scaling.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from profiler.contract.runjson import Layer, ModelInfo

SEED_PARAMETERS = 140_902_954
_CONV_CHANNELS = (48, 96, 192, 256, 512, 1024)
_FC_HIDDEN = (2048, 64)


def _scaled(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


class ConvNet(nn.Module):
    """conv 3→48→96, pool, dropout, conv →192→256→512→1024, pool, dropout, fc →2048→64, dropout, →10."""

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        c1, c2, c3, c4, c5, c6 = (_scaled(c, width) for c in _CONV_CHANNELS)
        h1, h2 = (_scaled(h, width) for h in _FC_HIDDEN)

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(3, c1), *conv(c1, c2),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            *conv(c2, c3), *conv(c3, c4), *conv(c4, c5), *conv(c5, c6),
            nn.MaxPool2d(2), nn.Dropout(0.25),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c6 * 8 * 8, h1), nn.ReLU(inplace=True),
            nn.Linear(h1, h2), nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: nn.Module, sample_shape: Sequence[int] = (3, 32, 32)) -> ModelInfo:
    """run.json "model": parameters, and per conv/linear layer the shapes and FLOPs of one sample.

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
            model(torch.empty(1, *sample_shape, device=first.device, dtype=first.dtype))
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

