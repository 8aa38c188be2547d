"""Synthetic CIFAR-shaped data: deterministic, learnable, through the seed transforms; CIFAR-10 errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import DataError, SyntheticCIFAR, build_datasets, train_transform


def _raw(ds: SyntheticCIFAR, idx: range) -> np.ndarray:
    return np.stack([np.asarray(ds.image(i)) for i in idx])


def test_same_seed_same_images_and_labels() -> None:
    a, b = SyntheticCIFAR(1000, seed=3), SyntheticCIFAR(1000, seed=3)
    assert a.targets == b.targets
    assert np.array_equal(_raw(a, range(0, 1000, 97)), _raw(b, range(0, 1000, 97)))
    c = SyntheticCIFAR(1000, seed=4)
    assert not np.array_equal(_raw(a, range(10)), _raw(c, range(10)))
    test = SyntheticCIFAR(1000, seed=3, train=False)
    assert not np.array_equal(_raw(a, range(10)), _raw(test, range(10)))


def test_default_size_shape_and_all_classes() -> None:
    ds = SyntheticCIFAR(seed=0)
    assert len(ds) == 50_000
    assert set(ds.targets) == set(range(10))
    img = ds.image(49_999)
    assert img.size == (32, 32) and img.mode == "RGB"
    with pytest.raises(IndexError):
        ds.image(50_000)


def test_items_go_through_the_seed_transforms() -> None:
    ds = SyntheticCIFAR(64, seed=0, transform=train_transform())
    x, y = ds[5]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert isinstance(y, int) and 0 <= y < 10
    assert x.min() < 0 < x.max()          # normalised around the CIFAR mean


def test_classes_are_separable_so_the_loss_can_fall() -> None:
    """Nearest class-mean on raw pixels, fitted on one half, must beat chance (10 %) by far."""
    ds = SyntheticCIFAR(2000, seed=1)
    x = _raw(ds, range(2000)).reshape(2000, -1).astype(np.float32)
    y = np.array(ds.targets)
    means = np.stack([x[:1000][y[:1000] == c].mean(0) for c in range(10)])
    pred = ((x[1000:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y[1000:]).mean() > 0.8


def test_cifar10_missing_dir_names_the_path_and_the_flag(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        build_datasets("cifar10", missing, False, None, 0)
    text = str(err.value)
    assert str(missing) in text and "--download" in text and "\n" not in text
    with pytest.raises(DataError, match="--data-dir"):
        build_datasets("cifar10", None, False, None, 0)
