"""Training data: a synthetic CIFAR-shaped set (default) or real CIFAR-10, both through
the seed's transforms so data loading costs what it really costs.

The synthetic set makes each image lazily from (seed, index): class templates are drawn
once in one vectorised pass; an item is its class template plus per-item noise and a random
shift, as a uint8 PIL image. Construction is O(n) for the labels only, so 50,000 items cost
milliseconds, and any DataLoader worker can build any item without shared state.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)


class DataError(Exception):
    """Bad data input the user can fix (printed as one line, exit 2)."""


def train_transform() -> transforms.Compose:
    """The seed's training transforms."""
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
    ])


def test_transform() -> transforms.Compose:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])


def _class_templates(seed: int) -> np.ndarray:
    """(10, 32, 32, 3) float32 in [0, 255]: a colour and an oriented stripe pattern per class."""
    rng = np.random.default_rng([seed, 0x5EED])
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    colours = rng.uniform(40, 215, size=(NUM_CLASSES, 1, 1, 3)).astype(np.float32)
    angles = rng.uniform(0, np.pi, size=NUM_CLASSES).astype(np.float32)
    freqs = rng.uniform(0.2, 0.9, size=NUM_CLASSES).astype(np.float32)
    phase = (np.cos(angles)[:, None, None] * xx + np.sin(angles)[:, None, None] * yy) * freqs[:, None, None]
    stripes = np.sin(phase)[..., None] * 40.0                          # (10, 32, 32, 1)
    return np.clip(colours + stripes, 0, 255).astype(np.float32)


class SyntheticCIFAR(Dataset):
    """CIFAR-shaped (32x32 RGB, 10 classes) images, deterministic for (seed, train, index)."""

    def __init__(self, size: int = 50_000, train: bool = True, seed: int = 0,
                 transform: transforms.Compose | None = None, noise: float = 48.0) -> None:
        self.size = int(size)
        self.seed = int(seed)
        self.split = 0 if train else 1
        self.transform = transform
        self.noise = float(noise)
        self.templates = _class_templates(self.seed)
        self.targets = np.random.default_rng([self.seed, self.split, 1]).integers(
            0, NUM_CLASSES, size=self.size).tolist()

    def __len__(self) -> int:
        return self.size

    def image(self, index: int) -> Image.Image:
        """The raw uint8 PIL image of item `index` (before transforms)."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.split, 2, index])
        base = self.templates[self.targets[index]]
        dy, dx = rng.integers(-3, 4, size=2)
        arr = np.roll(base, (int(dy), int(dx)), axis=(0, 1)) + rng.normal(0, self.noise, IMAGE_SHAPE)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")

    def __getitem__(self, index: int) -> tuple[object, int]:
        img = self.image(index)
        return (self.transform(img) if self.transform else img), self.targets[index]


def cifar10(data_dir: str | Path, train: bool, download: bool, transform: transforms.Compose) -> Dataset:
    """torchvision's CIFAR-10, or a DataError naming the path and the flag that fixes it."""
    from torchvision.datasets import CIFAR10

    root = Path(data_dir).expanduser()
    try:
        return CIFAR10(root=str(root), train=train, download=download, transform=transform)
    except RuntimeError as exc:   # torchvision: "Dataset not found or corrupted..."
        if download:
            raise DataError(f"could not download CIFAR-10 into {root}: {exc}") from exc
        raise DataError(f"CIFAR-10 not found in {root} (expected {root / 'cifar-10-batches-py'}); "
                        f"pass --download to fetch it, or --data-dir DIR where it is") from exc
    except OSError as exc:        # download without network, unwritable dir, ...
        raise DataError(f"could not get CIFAR-10 into {root}: {exc}") from exc


def build_datasets(data: str, data_dir: str | Path | None, download: bool, train_size: int | None,
                   seed: int) -> tuple[Dataset, Dataset]:
    """(train, test) datasets for --data; train_size caps the training set (synthetic: sets it)."""
    if data == "synthetic":
        n = train_size or 50_000
        return (SyntheticCIFAR(n, train=True, seed=seed, transform=train_transform()),
                SyntheticCIFAR(max(n // 5, 1), train=False, seed=seed, transform=test_transform()))
    if data == "cifar10":
        if not data_dir:
            raise DataError("--data cifar10 needs --data-dir DIR (add --download to fetch it there)")
        train = cifar10(data_dir, True, download, train_transform())
        test = cifar10(data_dir, False, download, test_transform())
        if train_size and train_size < len(train):
            from torch.utils.data import Subset
            train = Subset(train, range(train_size))
        return train, test
    raise DataError(f"unknown --data {data!r}: use synthetic or cifar10")
