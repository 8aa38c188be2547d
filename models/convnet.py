"""The seed's CIFAR-10 ConvNet (CHTC multi-GPU example), layer for layer.

Default width = the seed model, 140,902,954 parameters. `width` scales channels and the
hidden fc widths so tests can run a tiny copy of the same graph; never use it to claim
anything about the seed's scaling.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

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


def describe(model: nn.Module) -> dict[str, Any]:
    """run.json "model": total parameters/bytes and every conv/linear layer (what DP moves)."""
    layers = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            layers.append({"name": name, "type": type(mod).__name__,
                           "parameters": sum(p.numel() for p in mod.parameters(recurse=False))})
    params = list(model.parameters())
    return {"parameters": sum(p.numel() for p in params),
            "parameter_bytes": sum(p.numel() * p.element_size() for p in params),
            "layers": layers}
