"""The seed's CIFAR-10 ConvNet (CHTC multi-GPU example), layer for layer.

Default width = the seed model, 140,902,954 parameters. `width` scales channels and the
hidden fc widths so tests can run a tiny copy of the same graph; never use it to claim
anything about the seed's scaling.
"""
from __future__ import annotations


import torch
from torch import nn

from profiler.modeltable import describe

__all__ = ["ConvNet", "SEED_PARAMETERS", "count_parameters", "describe"]   # describe: the seed model's table

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
